#!/bin/sh
# Stand-in for the official redis image's entry point (CI only): `redis-server ARGS` (or just
# `--flag ...`) runs the server with protected mode off, as the official build does, so other
# containers on the network can reach it; anything else runs as given.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
