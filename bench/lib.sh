# Shared by the benchmarks: timing and statistics.  Benchmarks print
# figures; they assert nothing.
now_ns() { date +%s%N; }
# stats NAME FILE (one number of ms per line): prints median and p95.
stats() {
	sort -n "$2" | awk -v name="$1" '{a[NR]=$1} END {
		if (NR == 0) { printf "%-28s no samples\n", name; exit }
		m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
		i = int(NR * 0.95 + 0.999); if (i > NR) i = NR; if (i < 1) i = 1
		printf "%-28s n=%-3d median %8.1f ms   p95 %8.1f ms\n", name, NR, m, a[i] }'
}
median() { sort -n "$1" | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }
