#!/bin/bash
# Host recording time (record_ms) of one forward+backward per plan, two builds of
# gru-wgpu run alternately ROUNDS times at B=4 T=32 H=32; prints the per-plan
# median of each build.
# usage: recbench.sh OUTDIR BIN1 BIN2 ... ; runs each binary ROUNDS times alternately
out=$1; shift; mkdir -p $out
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
for r in $(seq 1 ${ROUNDS:-3}); do
  i=0
  for b in "$@"; do
    $b bench --plan all --json --mode fwdbwd --batch 4 --seq 32 --hidden 32 --iters 5 > $out/bin$i-r$r.jsonl 2>/dev/null
    i=$((i+1))
  done
done
python3 - $out $# <<'PY'
import json,sys,glob,statistics as st
out,n=sys.argv[1],int(sys.argv[2])
res=[]
for i in range(n):
  per={}
  for f in glob.glob(f'{out}/bin{i}-r*.jsonl'):
    for l in open(f):
      if l.startswith('{'):
        r=json.loads(l); per.setdefault(r['plan'],[]).append(r['record_ms'])
  res.append({k:st.median(v) for k,v in per.items()})
for k in res[0]:
  print(f'{k:28s}',' '.join(f'{r.get(k,0):.3f}' for r in res))
print('sum'.ljust(28),' '.join(f'{sum(r.values()):.3f}' for r in res))
PY
