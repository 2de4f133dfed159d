#!/usr/bin/env bash
# Buildpack builds, per built-in buildpack fixture: the first build, a cached rebuild (an
# empty commit: unchanged dependencies) and the release image's size. flask and express are
# the examples users start from (a framework from PyPI or npm, pinned).
# Usage: scripts/bench-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

apt_install docker.io nginx libnginx-mod-http-lua git openssh-client debootstrap python3
ensure_docker
bench_berth

bench_daemon
"$BERTH" --root "$ROOT" stack:build >/dev/null

fixture() { # NAME: writes the fixture app into the current directory
    case $1 in
    python)
        echo 'six==1.16.0' >requirements.txt
        echo 'web: python -m http.server $PORT' >Procfile ;;
    nodejs)
        echo '{"name":"n","version":"1.0.0","scripts":{"start":"node server.js"},"dependencies":{"is-number":"7.0.0"}}' >package.json
        echo "require('http').createServer((q, r) => r.end('ok')).listen(process.env.PORT)" >server.js ;;
    flask)
        printf 'flask==3.0.3\ngunicorn==22.0.0\n' >requirements.txt
        printf 'from flask import Flask\napp = Flask(__name__)\n\n@app.get("/")\ndef index():\n    return "ok"\n' >app.py
        echo 'web: gunicorn --bind 0.0.0.0:$PORT app:app' >Procfile ;;
    express)
        echo '{"name":"e","version":"1.0.0","scripts":{"start":"node server.js"},"dependencies":{"express":"4.19.2"}}' >package.json
        echo "const app = require('express')(); app.get('/', (q, r) => r.send('ok')); app.listen(process.env.PORT)" >server.js ;;
    go)
        printf 'module example.com/b\n\ngo 1.19\n' >go.mod
        printf 'package main\nimport ("net/http"; "os")\nfunc main() { http.ListenAndServe(":"+os.Getenv("PORT"), http.FileServer(http.Dir("."))) }\n' >main.go ;;
    static)
        echo 'hello' >index.html ;;
    procfile)
        mkdir -p public && echo 'hello' >public/index.html
        echo 'web: busybox httpd -f -p $PORT -h /app/public' >Procfile ;;
    esac
}

build_time() { sed -n 's/.*Build done in \([0-9.]*\)s.*/\1/p' "$1"; }

printf '| %-9s | %13s | %14s | %9s |\n' buildpack "first build s" "cached build s" "image MB"
printf '|%s|%s|%s|%s|\n' ----------- --------------- ---------------- -----------
for bp in python nodejs flask express go static procfile; do
    app="bench-$bp"
    "$BERTH" --root "$ROOT" apps:create "$app" >/dev/null
    bench_app_repo "$app"
    fixture "$bp"
    git add -A && git commit -qm first
    git push deploy main 2>"$WORK/$app.1.log" || { cat "$WORK/$app.1.log"; die "$bp: first push failed"; }
    git commit -q --allow-empty -m again
    git push deploy main 2>"$WORK/$app.2.log" || { cat "$WORK/$app.2.log"; die "$bp: second push failed"; }
    size=$(docker image inspect -f '{{.Size}}' "berth/$app:v2")
    printf '| %-9s | %13s | %14s | %9s |\n' "$bp" "$(build_time "$WORK/$app.1.log")" "$(build_time "$WORK/$app.2.log")" "$((size / 1000000))"
done
echo "goal: the first build of flask and express (a real framework from PyPI and npm) <= 10 s"
echo "(the image includes the stack, $(docker image inspect -f '{{.Size}}' berth/stack:bookworm | awk '{printf "%d", $1/1000000}') MB, shared by every app)"
