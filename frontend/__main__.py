"""``python -m frontend --api-url http://127.0.0.1:8000``: the dashboard as its own process."""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m frontend", description=(
        "Serve curvscope's dashboard on its own, talking to a curvscope API over HTTP."))
    parser.add_argument("--api-url", default=os.environ.get("CURVSCOPE_API_URL"),
                        help="the API's address, e.g. http://127.0.0.1:8000 "
                        "[default: $CURVSCOPE_API_URL]")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8050, help="port [8050]")
    parser.add_argument("--token", default=os.environ.get("CURVSCOPE_API_TOKEN"),
                        help="bearer token for writes [default: $CURVSCOPE_API_TOKEN]")
    args = parser.parse_args(argv)
    if not args.api_url:
        parser.error("give --api-url or set CURVSCOPE_API_URL")

    import uvicorn

    from frontend.app import create_app

    uvicorn.run(create_app(args.api_url, args.token), host=args.host, port=args.port,
                log_level="info")


if __name__ == "__main__":
    main()
