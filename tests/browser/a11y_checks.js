() => {
  function parse(c) { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(x => parseFloat(x)); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; }
  function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); }
  function blend(top, bottom) { const a = top.a; return {r: top.r * a + bottom.r * (1 - a), g: top.g * a + bottom.g * (1 - a), b: top.b * a + bottom.b * (1 - a), a: 1}; }
  function background(el) {
    const layers = [];
    for (let n = el; n; n = n.parentElement) { const c = parse(getComputedStyle(n).backgroundColor); if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; } }
    let bg = {r: 255, g: 255, b: 255, a: 1};
    if (document.documentElement.getAttribute('data-theme') === 'dark') { bg = {r: 17, g: 20, b: 24, a: 1}; }
    for (let i = layers.length - 1; i >= 0; i--) { bg = blend(layers[i], bg); }
    return bg;
  }
  const failures = [];
  const all = document.querySelectorAll('body *');
  for (const el of all) {
    if (el.closest('svg, .js-plotly-plot, [hidden], .sr-only, option')) continue;
    if (el.closest('button:disabled, input:disabled, [aria-disabled=true], .dash-dropdown-placeholder')) continue;
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = el.getBoundingClientRect(); if (!r.width || !r.height) continue;
    const cs = getComputedStyle(el); if (cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0) continue;
    let fg = parse(cs.color); const bg = background(el); fg = blend(fg, bg);
    const l1 = lum(fg), l2 = lum(bg); const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < need) failures.push(el.tagName + '.' + el.className + ' "' + el.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
  }
  const unnamed = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (el.closest('.js-plotly-plot')) continue;
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || (el.labels && el.labels.length) || el.closest('label');
    if (!named) unnamed.push(el.outerHTML.slice(0, 120));
  }
  const focusable = Array.from(document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')).filter(e => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length);
  const modebar = focusable.filter(e => e.closest('.modebar')).length;
  return {contrast: failures.slice(0, 40), n_contrast: failures.length, unnamed: unnamed.slice(0, 10), n_unnamed: unnamed.length,
          tab_stops: focusable.length, modebar_tab_stops: modebar, share: document.querySelectorAll('[data-title="Share chart"]').length,
          lang: document.documentElement.lang, width: document.documentElement.scrollWidth};
}
