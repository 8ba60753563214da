"""Any path the dashboard does not know."""

import dash
from dash import dcc, html

dash.register_page(__name__, title="Not found · curvscope")

layout = html.Div([
    html.H1("Nothing here"),
    html.P(["This page does not exist. ", dcc.Link("Back to the studies", href="/"), "."]),
])
