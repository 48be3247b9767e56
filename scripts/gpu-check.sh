#!/usr/bin/env bash
# gpu-check.sh OUTDIR [--quick]: everything BENCHMARKS.md asks of a machine
# with a GPU, in one command, with a release binary built beforehand (no Rust
# toolchain needed here). See BENCHMARKS.md, "A GPU machine in one command".
#
# Writes to OUTDIR:
#   machine.txt           uname, nvidia-smi, the binary's version, the Vulkan loader used
#   adapters.txt          gru-wgpu adapters
#   selftest-adapter.txt  gru-wgpu selftest --thorough --limits adapter
#   selftest-webgpu.txt   gru-wgpu selftest --thorough --limits webgpu
#   tune.jsonl            gru-wgpu tune --json: every candidate plan of each
#                         shape below timed on this adapter, the fastest
#                         marked and cached (the bench's automatic plans)
#   bench.jsonl           gru-wgpu bench --json: the default shapes and
#                         B=16 T=256 I=H=64, B=64 T=100 I=H=512, B=256 T=64 I=H=1024,
#                         forward and forward+backward; then the same with
#                         --precision f16 (f16 storage) where the adapter has SHADER_F16
#   gemm.jsonl            gru-wgpu bench-gemm --json at 4096³ and the GRU's product shapes,
#                         every GEMM kernel the adapter runs
#   torch-cuda.jsonl      benches/torch_gru.py on CUDA, same shapes, TF32 off (float32 against float32),
#                         then --dtype float16 (cuDNN's f16 GRU, the anchor of our f16 rows)
#   torch.txt             what the CUDA part said (or why it did not run; the
#                         probe's own stderr is kept in torch-probe.err)
#   summary.md            the table: per shape, mode and precision, gru-wgpu, cuDNN, the ratio
#   kernel-stats.jsonl    AMD's compiler's figures of every kernel (kernel-stats --json),
#                         run here where KERNEL_STATS_BIN (default target/release/kernel-stats)
#                         and RADV are, else the checkout's benches/results copy
#   log.txt               every command run, its exit status and its seconds
#
# Environment:
#   GRU_WGPU_BIN   the binary (default: target/release/gru-wgpu beside this
#                  script's repository, else gru-wgpu on PATH)
#   PYTHON         the Python with torch (default python3)
#   VULKAN_DEBS    a folder of Debian packages (libvulkan1 and its
#                  neighbours, e.g. mesa-vulkan-drivers) to unpack and use
#                  where the machine has no Vulkan loader
#   GRU_WGPU_ADAPTER  which adapter (as gru-wgpu --adapter)
#   GPU_CHECK_BUDGET  seconds one command may run before it is stopped
#                  (default 300; 240 with --quick)
#
# --quick (automatic when the adapter is a CPU adapter such as llvmpipe): the
# sweep's three added shapes and the GEMMs run one timed call and no warm-up,
# the GEMMs on the kernel such an adapter uses (windows), so that a software
# adapter finishes in about a quarter of an hour; every command is still run.
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--quick]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1
shift
quick=0
for a in "$@"; do
  case $a in
    --quick) quick=1 ;;
    *) usage ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GRU_WGPU_BIN:-}
if [ -z "$bin" ]; then
  if [ -x "$here/target/release/gru-wgpu" ]; then
    bin=$here/target/release/gru-wgpu
  else
    bin=$(command -v gru-wgpu || true)
  fi
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "error: no gru-wgpu binary: build one with \`cargo build --release\` and copy target/release/gru-wgpu, or set GRU_WGPU_BIN" >&2
  exit 2
fi
py=${PYTHON:-python3}
torch_script=$here/benches/torch_gru.py

mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
log=$out/log.txt
: > "$log"
start_all=$(date +%s)

# run NAME BUDGET CMD...: runs CMD with its stdout to OUTDIR/NAME (appended),
# stderr to the log, stopped after BUDGET seconds; logs status and time.
run() {
  local name=$1 budget=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo "\$ $*" >> "$log"
  timeout --kill-after=10 "$budget" "$@" >> "$out/$name" 2>> "$log"
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "# stopped after the budget of ${budget} s: $*" >> "$out/$name"
    echo "exit: stopped after ${budget} s (budget)" >> "$log"
  else
    echo "exit: $rc after ${dt} s" >> "$log"
  fi
  echo "$(date -u +%H:%M:%S) ${dt}s rc=$rc $name: $*" >&2
  return $rc
}

# The Vulkan loader: the system's, else unpacked from VULKAN_DEBS.
loader=system
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  if [ -n "${VULKAN_DEBS:-}" ] && ls "$VULKAN_DEBS"/*.deb > /dev/null 2>&1; then
    root=$out/vulkan-root
    mkdir -p "$root"
    for d in "$VULKAN_DEBS"/*.deb; do
      dpkg-deb -x "$d" "$root" || { echo "error: could not unpack $d" >&2; exit 2; }
    done
    libdirs=$(find "$root" -name 'libvulkan.so*' -printf '%h\n' | sort -u | paste -sd:)
    if [ -z "$libdirs" ]; then
      echo "error: no libvulkan.so.1 in the packages of $VULKAN_DEBS (libvulkan1 is needed)" >&2
      exit 2
    fi
    # Every shared library the packages hold, loader and drivers alike.
    alldirs=$(find "$root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
    export LD_LIBRARY_PATH=$alldirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # Drivers (ICD files) from the packages, their library paths pointed at
    # the unpacked copies; the system's own (the NVIDIA driver's) stay.
    icds=
    for j in $(find "$root" -path '*vulkan/icd.d/*.json' 2>/dev/null); do
      fixed=$out/vulkan-root/icd-$(basename "$j")
      lib=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$j")
      sed "s|\"library_path\": *\"[^\"]*\"|\"library_path\": \"$root$lib\"|" "$j" > "$fixed"
      icds=${icds:+$icds:}$fixed
    done
    [ -n "$icds" ] && export VK_ADD_DRIVER_FILES=$icds
    loader="unpacked from $VULKAN_DEBS into $root"
  else
    loader="none found (no libvulkan.so.1; set VULKAN_DEBS to a folder of libvulkan1 and its neighbours)"
  fi
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uname: $(uname -a)"
  echo "binary: $bin ($("$bin" --version 2>&1))"
  echo "vulkan loader: $loader"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  else
    echo "nvidia-smi: not found"
  fi
} > "$out/machine.txt"

: > "$out/adapters.txt"
run adapters.txt 60 "$bin" adapters
if grep -q 'CPU (software)' "$out/adapters.txt" && ! grep -qv 'CPU (software)' "$out/adapters.txt"; then
  quick=1
fi
if [ -n "${GRU_WGPU_ADAPTER:-}" ]; then
  # The adapter asked for decides.
  if "$bin" --adapter "$GRU_WGPU_ADAPTER" adapters 2>/dev/null | grep -qi "$GRU_WGPU_ADAPTER.*CPU (software)"; then
    quick=1
  fi
fi
budget=${GPU_CHECK_BUDGET:-$([ $quick = 1 ] && echo 240 || echo 300)}
echo "quick: $quick (budget ${budget} s per command)" >> "$out/machine.txt"

for l in adapter webgpu; do
  : > "$out/selftest-$l.txt"
  run "selftest-$l.txt" "$budget" "$bin" selftest --thorough --limits "$l"
done

# The sweep: the default shapes, then the three large ones.
big_shapes="16,256,64 64,100,512 256,64,1024"
few=()
[ $quick = 1 ] && few=(--iters 1 --warmup 0)
# The plans, tuned first (their cache is the bench's automatic choice; a
# cache of its own in OUTDIR, so every run measures).
export GRU_WGPU_CACHE_DIR=$out/plan-cache
: > "$out/tune.jsonl"
run tune.jsonl "$budget" "$bin" tune --json
for s in $big_shapes; do
  IFS=, read -r b t h <<< "$s"
  run tune.jsonl "$budget" "$bin" tune --json --batch "$b" --seq "$t" --input "$h" --hidden "$h"
done
: > "$out/bench.jsonl"
# f32, then f16 where the adapter has SHADER_F16 (a bench in f16 without it
# fails with the reason, which the log keeps).
for p in f32 f16; do
  run bench.jsonl "$budget" "$bin" bench --json --mode both --precision $p
  for s in $big_shapes; do
    IFS=, read -r b t h <<< "$s"
    # One mode a command: a shape whose backward does not fit still has its forward.
    for m in fwd fwdbwd; do
      run bench.jsonl "$budget" "$bin" bench --json --mode $m --batch "$b" --seq "$t" --input "$h" --hidden "$h" --precision $p "${few[@]}"
    done
  done
done

# The GEMMs: 4096³, then per large shape the input projection
# (T·B x 3H x I), the weight gradient (3H x I x T·B) and one step's
# recurrent product (B x 3H x H).
kernel=all
[ $quick = 1 ] && kernel=windows
: > "$out/gemm.jsonl"
gemm() {
  run gemm.jsonl "$budget" "$bin" bench-gemm --json --kernel "$kernel" --m "$1" --n "$2" --k "$3" "${few[@]:0:2}"
}
gemm 4096 4096 4096
for s in $big_shapes; do
  IFS=, read -r b t h <<< "$s"
  gemm $((t * b)) $((3 * h)) "$h"
  gemm $((3 * h)) "$h" $((t * b))
  gemm "$b" $((3 * h)) "$h"
done

# PyTorch on CUDA, float32 against float32.
: > "$out/torch-cuda.jsonl"
probe=$("$py" - 2> "$out/torch-probe.err" <<'EOF'
import torch
if not torch.cuda.is_available():
    print(f"no CUDA device is present (torch {torch.__version__}, torch.cuda.is_available() is False)")
else:
    print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
EOF
)
probe_rc=$?
if [ $probe_rc -ne 0 ]; then
  reason=$(tail -1 "$out/torch-probe.err")
  echo "CUDA part not run: PyTorch cannot be imported by $py ($reason); no CUDA device could be checked" > "$out/torch.txt"
elif echo "$probe" | grep -q '^cuda: '; then
  echo "$probe" > "$out/torch.txt"
  for dt in float32 float16; do
    tf32=(--no-tf32 --device cuda --json --dtype $dt)
    run torch-cuda.jsonl "$budget" "$py" "$torch_script" "${tf32[@]}"
    for s in $big_shapes; do
      IFS=, read -r b t h <<< "$s"
      for m in fwd fwdbwd; do
        run torch-cuda.jsonl "$budget" "$py" "$torch_script" "${tf32[@]}" --mode $m --batch "$b" --seq "$t" --input "$h" --hidden "$h"
      done
    done
  done
else
  echo "CUDA part not run: $probe" > "$out/torch.txt"
fi
echo "torch: $(cat "$out/torch.txt")" >&2

# AMD's compiler's figures of the same kernels (kernel-stats, BENCHMARKS.md),
# beside the measurements: run afresh where a kernel-stats binary and RADV's
# manifest are here (RADV's null device needs no AMD GPU), else the figures
# committed with this checkout.
ks_bin=${KERNEL_STATS_BIN:-$here/target/release/kernel-stats}
if [ -x "$ks_bin" ] && [ -e "${GRU_WGPU_RADV_ICD:-/usr/share/vulkan/icd.d/radeon_icd.x86_64.json}" ]; then
  run kernel-stats.txt "$budget" "$ks_bin" --json "$out/kernel-stats.jsonl"
else
  ks_file=$(ls "$here"/benches/results/kernel-stats-*-after.jsonl 2>/dev/null | tail -1)
  if [ -n "$ks_file" ]; then
    cp "$ks_file" "$out/kernel-stats.jsonl"
    echo "kernel-stats not run here (no binary or no RADV): copied $ks_file" > "$out/kernel-stats.txt"
  fi
fi

# The summary.
elapsed=$(( $(date +%s) - start_all ))
{
  echo "# gpu-check summary"
  echo
  sed 's/^/    /' "$out/machine.txt"
  echo
  echo "adapters:"
  sed 's/^/    /' "$out/adapters.txt"
  echo
  for l in adapter webgpu; do
    echo "selftest --thorough --limits $l: $(grep '^selftest: ' "$out/selftest-$l.txt" | tail -1 || true) ($(grep -c '| not run: ' "$out/selftest-$l.txt") not run)"
  done
  echo
  echo "CUDA: $(cat "$out/torch.txt")"
  echo
} > "$out/summary.md"
"$py" - "$out" >> "$out/summary.md" 2>> "$log" <<'EOF' || echo "(the table needs python3: not written)" >> "$out/summary.md"
import json, os, sys
out = sys.argv[1]
def load(name):
    rows = []
    try:
        with open(os.path.join(out, name)) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    except OSError:
        pass
    return rows
ours = load("bench.jsonl")
theirs = {}
for r in load("torch-cuda.jsonl"):
    theirs[(r["mode"], r["batch"], r["seq"], r["input"], r["hidden"], r["layers"], r["bidirectional"], r.get("precision", "f32"))] = r
print("| shape | mode | precision | gru-wgpu ms | GFLOP/s | plan | cuDNN ms | GFLOP/s | gru-wgpu / cuDNN |")
print("|---|---|---|---:|---:|---|---:|---:|---:|")
for r in ours:
    prec = r.get("precision", "f32")
    key = (r["mode"], r["batch"], r["seq"], r["input"], r["hidden"], r["layers"], r["bidirectional"], prec)
    t = theirs.get(key)
    shape = f"B={r['batch']} T={r['seq']} I={r['input']} H={r['hidden']}"
    mode = "fwd" if r["mode"] == "fwd" else "fwd+bwd"
    plan = r.get("plan") or "-"
    if t:
        print(f"| {shape} | {mode} | {prec} | {r['median_ms']:.3f} | {r['gflops']:.1f} | {plan} | {t['median_ms']:.3f} | {t['gflops']:.1f} | {r['median_ms'] / t['median_ms']:.2f}x |")
    else:
        print(f"| {shape} | {mode} | {prec} | {r['median_ms']:.3f} | {r['gflops']:.1f} | {plan} | - | - | - |")
print()
print(f"gru-wgpu on: {ours[0]['adapter'] if ours else '-'}; iterations: " + ", ".join(sorted({str(r['iters']) for r in ours})))
if theirs:
    print(f"cuDNN: {next(iter(theirs.values()))['adapter']}")
print()
print("| shape | plans timed | chosen | its ms | slowest ms |")
print("|---|---:|---|---:|---:|")
shapes = {}
for c in load("tune.jsonl"):
    shapes.setdefault((c["batch"], c["seq"], c["input"], c["hidden"]), []).append(c)
for (b, t, i, h), cs in shapes.items():
    ok = [c for c in cs if c.get("median_ms") is not None]
    ch = [c for c in cs if c.get("chosen")]
    slow = max((c["median_ms"] for c in ok), default=None)
    print(f"| B={b} T={t} I={i} H={h} | {len(ok)} of {len(cs)} | {ch[0]['plan'] if ch else '-'} | "
          f"{ch[0]['median_ms']:.3f} | {slow:.3f} |" if ch and slow is not None else
          f"| B={b} T={t} I={i} H={h} | {len(ok)} of {len(cs)} | - | - | - |")
print()
print("| GEMM m x n x k | kernel | ms | GFLOP/s | rel error |")
print("|---|---|---:|---:|---:|")
for g in load("gemm.jsonl"):
    print(f"| {g['m']} x {g['n']} x {g['k']} | {g['kernel']} | {g['median_ms']:.3f} | {g['gflops']:.1f} | {g['rel_error']:.1e} |")
EOF
{
  echo
  stopped=$(grep -c '^exit: stopped after' "$log" || true)
  echo "commands stopped by the budget: $stopped (see log.txt)"
  echo
  echo "commands that did not succeed (with the error they printed):"
  awk '/^\$ /{cmd=substr($0,3); err=""; next}
       /^exit: /{if ($0 !~ /^exit: 0 /) print "- `" cmd "`: " $0 (err != "" ? "; " err : ""); next}
       /^error: /{err=$0}' "$log"
  echo "total: ${elapsed} s"
} >> "$out/summary.md"
echo "gpu-check: wrote $out in ${elapsed} s (summary.md)" >&2
