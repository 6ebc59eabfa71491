import sys, re, subprocess, collections
def selfcost(path):
    out = subprocess.run(["callgrind_annotate","--threshold=100","--auto=no",path],capture_output=True,text=True).stdout
    agg = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?):(\S.*?)( \[.*\])?$", line)
        if m:
            agg[m.group(3)] += int(m.group(1).replace(",",""))
    return agg
a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
A, B = selfcost(a), selfcost(b)
keys = sorted(set(A)|set(B), key=lambda k: -abs(A[k]-B[k]))
print(f"{'function':70} {'with':>9} {'without':>9} {'diff':>7}  (Ir per message, self)")
for k in keys[:int(sys.argv[4]) if len(sys.argv)>4 else 8]:
    print(f"{k[:70]:70} {A[k]/n:9.1f} {B[k]/n:9.1f} {(A[k]-B[k])/n:+7.1f}")
print(f"{'TOTAL':70} {sum(A.values())/n:9.1f} {sum(B.values())/n:9.1f} {(sum(A.values())-sum(B.values()))/n:+7.1f}")
