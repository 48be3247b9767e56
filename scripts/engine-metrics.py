#!/usr/bin/env python3
# Issue 23 metrics.
# - Functions over 100 lines in src/gpu (brace counting).
# - Public items under src/gpu: what a user of the library can name, read from
#   rustdoc's JSON of the library (`RUSTC_BOOTSTRAP=1 cargo rustdoc -- -Z
#   unstable-options --output-format json`): every item reachable from the
#   crate root (through public modules, re-exports and inherent impls of
#   public types) whose source is under src/gpu; functions, methods, types,
#   traits, constants and associated items count, modules, re-exports,
#   fields and variants do not. Counted without features (the library's own
#   face), with `test-hooks` (what the crate's tests see) and with
#   `--document-hidden-items` under the default features (the hidden
#   `gpu::gemm` module the command line's `bench-gemm` uses).
# - For comparison, the `pub` declarations in src/gpu's text (fn, struct,
#   enum, trait, type, const, static, mod, use; not fields), those the
#   test-hooks feature gates counted apart: this counts re-export lines and
#   `pub` items of crate-private types, which no user can reach.
# Usage: python3 scripts/engine-metrics.py [-v]
import json, os, re, subprocess, sys

root = 'src/gpu'
verbose = '-v' in sys.argv


def long_functions_and_text_pubs():
    long = []; pubs = []; hooked = []
    for d, _, fs in os.walk(root):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(d, f); L = open(p).read().split('\n')
            hook_depth = None
            for i, l in enumerate(L):
                s = l.strip()
                if s.startswith('test_hook! {'):
                    hook_depth = len(l) - len(l.lstrip())
                elif hook_depth is not None and s == '}' and len(l) - len(l.lstrip()) == hook_depth:
                    hook_depth = None
                if re.match(r'pub (fn|struct|enum|trait|type|const|static|mod|use|unsafe fn|async fn|const fn)\b', s):
                    k = i - 1; gated = hook_depth is not None
                    while k >= 0 and (L[k].strip().startswith('#[') or L[k].strip().startswith('///')):
                        if 'feature = "test-hooks"' in L[k] and 'not(' not in L[k]:
                            gated = True
                        k -= 1
                    (hooked if gated else pubs).append(f'{p}:{i+1}: {s[:90]}')
                m = re.match(r'\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)', l)
                if m:
                    depth = 0; started = False
                    for j in range(i, len(L)):
                        # Braces outside string literals and line comments.
                        code = re.sub(r'"(\\.|[^"\\])*"', '""', L[j]).split('//')[0]
                        for c in code:
                            if c == '{': depth += 1; started = True
                            elif c == '}': depth -= 1
                        if started and depth == 0: break
                        if not started and L[j].rstrip().endswith(';'): break
                    n = j - i + 1
                    if started and n > 100:
                        long.append((n, p, i + 1, m.group(6)))
    return long, pubs, hooked


def rustdoc_items(features, hidden=False):
    """The public items under src/gpu in rustdoc's JSON of the library."""
    target = f'target/engine-metrics/{features or "none"}{"-hidden" if hidden else ""}'
    cmd = ['cargo', 'rustdoc', '--lib', '--target-dir', target]
    cmd += ['--no-default-features'] + (['--features', features] if features and features != 'default' else [])
    if features == 'default':
        cmd = ['cargo', 'rustdoc', '--lib', '--target-dir', target]
    cmd += ['--', '-Z', 'unstable-options', '--output-format', 'json']
    if hidden:
        cmd += ['--document-hidden-items']
    env = dict(os.environ, RUSTC_BOOTSTRAP='1')
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f'rustdoc failed:\n{r.stderr[-3000:]}')
    d = json.load(open(os.path.join(target, 'doc', 'gru_wgpu.json')))
    idx = d['index']; seen = set(); out = []

    def visit(i, path):
        i = str(i)
        if i in seen or i not in idx:
            return
        seen.add(i); it = idx[i]
        kind, v = next(iter(it['inner'].items()))
        name = it.get('name')
        here = f'{path}::{name}' if name else path
        fn = (it.get('span') or {}).get('filename', '')
        if fn.startswith(root) and kind not in ('module', 'use', 'struct_field', 'variant', 'impl'):
            out.append((fn, kind, here))
        if kind == 'module':
            for c in v['items']: visit(c, here)
        elif kind == 'use' and v.get('id') is not None:
            visit(v['id'], path)
        elif kind in ('struct', 'enum', 'union'):
            for imp in v.get('impls', []):
                im = idx.get(str(imp))
                iv = im and im['inner'].get('impl')
                if iv and iv.get('trait') is None and not iv.get('synthetic') and not iv.get('blanket_impl'):
                    for c in iv['items']: visit(c, here)
        elif kind == 'trait':
            for c in v['items']: visit(c, here)

    visit(d['root'], 'gru_wgpu')
    return sorted(out)


long, pubs, hooked = long_functions_and_text_pubs()
print('functions >100 lines:', len(long))
for x in sorted(long, reverse=True): print('  ', x)
plain = rustdoc_items(None)
hooks = rustdoc_items('test-hooks')
hidden = rustdoc_items('default', hidden=True)
print('public items (rustdoc, no features):', len(plain))
print('  with test-hooks:', len(hooks), f'(+{len(hooks) - len(plain)})')
print('  default features with hidden items:', len(hidden), f'(+{len(hidden) - len(plain)})')
if verbose:
    for fn, kind, path in plain: print('  ', kind, path, f'({fn})')
print('pub declarations in the text:', len(pubs), '(and', len(hooked), 'behind test-hooks)')
if verbose:
    for x in pubs: print('  ', x)
