# Shell helpers shared by scripts/run.sh and scripts/bench-*.sh (sourced, not run).

# json KEY...: the value at that path of the JSON on stdin (numbers index arrays).
json() {
  python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1:]: d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$@"
}

# free_port: a TCP port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
