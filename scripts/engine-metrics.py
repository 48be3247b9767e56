#!/usr/bin/env python3
# Issue 23 metrics: functions over 100 lines in src/gpu (brace counting) and
# `pub` item declarations (fn, struct, enum, trait, type, const, static, mod,
# use; not fields) under src/gpu, those gated by the test-hooks feature counted
# apart. Usage: python3 scripts/engine-metrics.py [src/gpu] [-v]
import re,os,sys
root=sys.argv[1] if len(sys.argv)>1 else 'src/gpu'
long=[];pubs=[];hooked=[]
for d,_,fs in os.walk(root):
  for f in fs:
    if not f.endswith('.rs'): continue
    p=os.path.join(d,f); L=open(p).read().split('\n')
    for i,l in enumerate(L):
      s=l.strip()
      if re.match(r'pub (fn|struct|enum|trait|type|const|static|mod|use|unsafe fn|async fn)\b',s):
        # the attributes and docs above the item: skip it where test-hooks gates it
        k=i-1; gated=False
        while k>=0 and (L[k].strip().startswith('#[') or L[k].strip().startswith('///')):
          if 'feature = "test-hooks"' in L[k] and 'not(' not in L[k]: gated=True
          k-=1
        if gated: hooked.append(f'{p}:{i+1}: {s[:90]}')
        else: pubs.append(f'{p}:{i+1}: {s[:90]}')
      m=re.match(r'\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)',l)
      if m:
        depth=0;started=False
        for j in range(i,len(L)):
          for c in L[j]:
            if c=='{': depth+=1;started=True
            elif c=='}': depth-=1
          if started and depth==0: break
          if not started and L[j].rstrip().endswith(';'): break
        n=j-i+1
        if started and n>100: long.append((n,p,i+1,m.group(6)))
print('functions >100 lines:',len(long))
for x in sorted(long,reverse=True): print('  ',x)
print('public items:',len(pubs),'(and',len(hooked),'behind test-hooks)')
if '-v' in sys.argv:
  for x in pubs: print('  ',x)
