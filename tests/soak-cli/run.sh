#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# `qvet soak`, `replay` and `minimize` as a person or a CI job meets them: help, exit
# status, run directories and their locks, what is kept and what removed, summary.json,
# signals, progress, refused traces, and `make soak` beside a person's files.
# Environment: QVET (the qvet binary), SRC (the source tree, for `make soak`).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
qvet=${QVET:-$here/build/qvet}
src=${SRC:-$here}
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/qvet-soak-cli.XXXXXX")
cd "$work" || exit 2
failures=0 bg=()
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
cleanup() {
  local p
  for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null; done
  mountpoint -q "$work/small" 2>/dev/null && umount "$work/small"
  [ "$failures" -eq 0 ] && rm -rf "$work"
}
trap cleanup EXIT

# run NAME EXPECTED_STATUS ARGS...: runs qvet, output in NAME.out and NAME.err
run() {
  local name=$1 want=$2; shift 2
  "$qvet" "$@" > "$name.out" 2> "$name.err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "  qvet $*: exit $got, expected $want"; sed 's/^/    /' "$name.out" "$name.err" | head -20
    return 1
  fi
}
one_line() { [ "$(wc -l < "$1")" -eq 1 ]; }
no_nul() { [ "$(tr -dc '\0' < "$1" | wc -c)" -eq 0 ]; }
# json FILE EXPR: FILE passes python3 -m json.tool; prints EXPR of its object d (a tuple
# as words)
json() {
  python3 -m json.tool "$1" > /dev/null &&
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(*v) if isinstance(v, tuple) else print(v)' "$1" "$2"
}
last_op() { awk '/^[0-9]/ { n = $1 } END { print n }' "$1"; }
# waits (up to a minute: a wait, not a timing assertion) until the trace has N op lines
wait_ops() {
  local i
  for i in $(seq 600); do
    [ -f "$1" ] && [ "$(tr -d '\0' < "$1" | grep -c '^[0-9]')" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
small=(--size 8M --check-every 500)
# start_long DIR: a long soak in DIR in the background (its pid in $pid), once it has run
# 200 ops
start_long() {
  "$qvet" soak --seconds 300 "${small[@]}" --dir "$1" > "$1.out" 2>&1 &
  pid=$!; bg+=("$pid")
  wait_ops "$1/trace.txt" 200
}

# ---- help -----------------------------------------------------------------------------
run help 0 soak --help
check "soak --help explains every option with its default" bash -c '
  for o in --seed --ops --seconds --size -o --backing --config --cache --hang-seconds \
           --check-every --weights --io-size \
           --no-qemu-checks --under --dir --trace --keep --heartbeat --help; do
    grep -qE -- "^  (-[a-zA-Z], )?$o( |$)" help.out || { echo "  missing $o"; exit 1; }
  done
  for d in "default 1)" "default 60" "default 64M" "default 2000" "default reports/soak" \
           "default 10" "read=300"; do
    grep -qF -- "$d" help.out || { echo "  no default: $d"; exit 1; }
  done'
run rhelp 0 replay --help && run mhelp 0 minimize -h
check "replay and minimize --help" grep -q -- "--keep" rhelp.out
check "minimize --help names -o" grep -q -- "-o OUT" mhelp.out

# ---- usage errors exit 2 ----------------------------------------------------------------
check "an unknown option exits 2 with one line" run bad 2 soak --frobnicate
check "  ... one line" one_line bad.err
check "--dir with --under exits 2" run both 2 soak --dir a --under b

# ---- a passing run: numbered directory, latest, summary, large files removed -------------
check "a passing run exits 0" run pass1 0 soak --ops 600 "${small[@]}" --under runs
check "  ... in runs/run-0001, latest pointing to it" \
  test "$(readlink runs/latest)" = run-0001 -a -f runs/run-0001/trace.txt
check "  ... its large files removed" test ! -e runs/run-0001/image.qcow2 -a ! -e runs/run-0001/oracle.raw
check "  ... summary.json is valid JSON with the verdict" \
  test "$(json runs/run-0001/summary.json 'd["verdict"], d["exit_status"], d["ops"], d["failure"]')" = "passed 0 600 None"
check "  ... summary.json names the replay command and kept files" \
  test "$(json runs/run-0001/summary.json 'd["replay"], d["trace"] in d["kept_files"]')" = "qvet replay runs/run-0001/trace.txt True"
check "a second run gets run-0002; run-0001 stays" run pass2 0 soak --ops 100 "${small[@]}" --under runs --keep
check "  ... latest follows it" test "$(readlink runs/latest)" = run-0002 -a -d runs/run-0001
check "  ... --keep keeps the image and oracle" test -f runs/run-0002/image.qcow2 -a -f runs/run-0002/oracle.raw
check "  ... summary says they were kept" test "$(json runs/run-0002/summary.json 'd["large_files_removed"]')" = False

# ---- --ops with --seconds: whichever comes first ---------------------------------------------
check "--ops 50 --seconds 600 stops at 50 ops" run limits 0 soak --ops 50 --seconds 600 "${small[@]}" --dir limits
check "  ... 50 ops" test "$(json limits/summary.json 'd["ops"]')" = 50
check "--seconds 1 --ops 100000000 stops by time" run limits2 0 soak --ops 100000000 --seconds 1 "${small[@]}" --dir limits2
check "  ... fewer ops" test "$(json limits2/summary.json 'd["ops"] < 100000000')" = True

# ---- --dir: never into a person's directory -----------------------------------------------
mkdir mine && echo precious > mine/notes.txt
check "--dir on a non-empty directory qvet did not make exits 2" run mine 2 soak --ops 10 "${small[@]}" --dir mine
check "  ... one line naming it" bash -c 'one() { [ "$(wc -l < "$1")" -eq 1 ]; }; one mine.err && grep -q "mine: not empty" mine.err'
check "  ... nothing in it touched" test "$(ls -A mine)" = notes.txt -a "$(cat mine/notes.txt)" = precious
check "--dir on a passed run's directory reuses it" run reuse 0 soak --ops 10 "${small[@]}" --dir limits

# ---- a failing run keeps its evidence; its directory is not reused -----------------------
printf 'seed 1\nsize 8388608\noptions -\nbacking none\ncheck-every 0\nops\n1 write 0 4096\n2 write 65536 4096\n3 resize 4611686018427387904\n4 read 0 4096\n' > fails.txt
check "a failing replay exits 1" run fail1 1 replay fails.txt
check "  ... says where its work directory is" grep -q "in work directory fails.txt.replay/run-0001" fail1.out
check "  ... keeps image, oracle and trace" test -f fails.txt.replay/run-0001/image.qcow2 -a -f fails.txt.replay/run-0001/oracle.raw
check "  ... summary.json: verdict, failing op and its kind" \
  test "$(json fails.txt.replay/run-0001/summary.json 'd["verdict"], d["exit_status"], d["failure"]["op"], d["failure"]["op_kind"]')" = "target-error 1 3 resize"
check "--dir on a failed run's directory exits 2, keeping it" run refail 2 soak --ops 10 "${small[@]}" --dir fails.txt.replay/run-0001
check "  ... one line, saying why" bash -c '[ "$(wc -l < refail.err)" -eq 1 ] && grep -q "verdict target-error" refail.err && test -f fails.txt.replay/run-0001/image.qcow2'
check "a second failing replay goes to run-0002" run fail2 1 replay fails.txt
check "  ... run-0001 still there" test -f fails.txt.replay/run-0001/image.qcow2 -a -f fails.txt.replay/run-0002/image.qcow2

# ---- minimize ---------------------------------------------------------------------------------
check "minimize shrinks the failing trace" run min 0 minimize fails.txt -o small.txt
check "  ... to the failing op alone" test "$(grep -c '^[0-9]' small.txt)" = 1
check "  ... says where its work directory is and keeps the minimized run" \
  bash -c 'grep -q "minimize: work directory small.txt.minimize/run-0001" min.out && test -f small.txt.minimize/run-0001/image.qcow2'
check "the minimized trace still fails" run minrep 1 replay small.txt
check "minimize of a passing trace exits 2" run minpass 2 minimize runs/run-0001/trace.txt -o nothing.txt
check "  ... and removes its work directory" test ! -e nothing.txt.minimize

# ---- a passing replay cleans up ---------------------------------------------------------------
check "a passing replay exits 0" run rep 0 replay runs/run-0001/trace.txt
check "  ... and removes its work directory" bash -c 'grep -q "work directory runs/run-0001/trace.txt.replay/run-0001 removed" rep.out && test ! -e runs/run-0001/trace.txt.replay'
check "replay --keep keeps it" run repkeep 0 replay --keep runs/run-0001/trace.txt
check "  ... kept" test -f runs/run-0001/trace.txt.replay/run-0001/image.qcow2

# ---- traces that cannot be replayed: file and line, exit 2 ---------------------------------
printf 'seed 1\nsize 8388608\nops\n' > empty.txt
printf 'seed 1\nsize 8388608\nops\n1 write 0 4096\n2 write 8388608 4096\n' > outside.txt
printf 'seed 1\nsize 8388608\nops\n1 write 0 4096\n2 wrtie 0 4096\n' > malformed.txt
for t in empty:3 outside:5 malformed:5; do
  name=${t%:*} line=${t#*:}
  check "replay of $name.txt exits 2" run "r$name" 2 replay "$name.txt"
  check "  ... one line naming $name.txt line $line" bash -c "[ \"\$(wc -l < r$name.err)\" -eq 1 ] && grep -q '^qvet: $name.txt: line $line: ' r$name.err"
  check "  ... no work directory made" test ! -e "$name.txt.replay"
done

# ---- qemu-img missing, a full disk: 2, not a bug ---------------------------------------------
check "qemu-img not on PATH exits 2" bash -c "PATH=/nonexistent '$qvet' soak --ops 10 --dir noqemu > noqemu.out 2> noqemu.err; [ \$? -eq 2 ]"
check "  ... one line naming qemu-img, no directory made" bash -c '[ "$(wc -l < noqemu.err)" -eq 1 ] && grep -q "qemu-img not found on PATH" noqemu.err && test ! -e noqemu'
if mkdir small && mount -t tmpfs -o size=3m tmpfs small 2>/dev/null; then
  check "a full disk (3 MiB tmpfs) exits 2" run full 2 soak --ops 3000 --size 64M --dir small/run
  check "  ... says environment, not FAILED" bash -c 'grep -q "an environment failure, not a bug" full.out && ! grep -q FAILED full.out'
  check "  ... verdict setup-error, large files removed" test "$(json small/run/summary.json 'd["verdict"], d["large_files_removed"]')" = "setup-error True"
  umount small
else
  echo "SKIP a full disk: cannot mount a small tmpfs here (not root?); the Check suite's ENOSPC fault covers it"
fi

# ---- locks, SIGINT ------------------------------------------------------------------------------
if start_long long; then
  check "a second run in the same --dir exits 2" run locked 2 soak --ops 10 "${small[@]}" --dir long
  check "  ... one line naming the holder's pid" bash -c "[ \"\$(wc -l < locked.err)\" -eq 1 ] && grep -q 'in use by another qvet run (pid $pid,' locked.err"
  kill -INT "$pid"
fi
wait "$pid"; status=$?
check "SIGINT: exit 130" test "$status" -eq 130
n=$(last_op long/trace.txt)
check "  ... 'interrupted at op N' (N the trace's last op) and the replay command" \
  bash -c "grep -q '^soak: interrupted at op $n: ' long.out && grep -q '^  replay: qvet replay long/trace.txt' long.out"
check "  ... the trace holds only text" no_nul long/trace.txt
check "  ... summary.json: interrupted" test "$(json long/summary.json 'd["verdict"], d["last_op"]')" = "interrupted $n"
check "  ... the interrupted trace replays" run repint 0 replay long/trace.txt
check "a stale lock (its holder dead) does not block" bash -c 'mkdir stale && echo 999999999 > stale/.qvet-soak.lock'
check "  ... the run goes ahead" run stale 0 soak --ops 10 "${small[@]}" --dir stale

# ---- a crash of the target; a kill ------------------------------------------------------------------
start_long crash && kill -SEGV "$(pgrep -P "$pid")"
wait "$pid"; status=$?
check "the worker dying of SIGSEGV: exit 1 (a crash is a bug)" test "$status" -eq 1
n=$(last_op crash/trace.txt)
# The signal lands during an op or during a cross-check after one, as the timing falls.
check "  ... 'the target crashed at op N' (or in the cross-check after it) and the replay command" \
  bash -c "grep -qE '^qvet soak: the target crashed (at op $n |in the cross-check after op $n: )' crash.out && grep -q 'replay: qvet replay crash/trace.txt' crash.out"
check "  ... the trace holds only text" no_nul crash/trace.txt
check "  ... evidence kept" test -f crash/image.qcow2
check "  ... summary.json: verdict crashed at op N" test "$(json crash/summary.json 'd["verdict"], d["failure"]["op"]')" = "crashed $n"

if start_long killed; then
  worker=$(pgrep -P "$pid")
  kill -KILL "$pid" "$worker"
fi
{ wait "$pid"; } 2>/dev/null
check "a trace left by SIGKILL still has its NUL tail (the test is real)" bash -c '! { tr -dc "\0" < killed/trace.txt | cmp -s - /dev/null; }'
check "  ... replay stops at the first NUL and says so" run repkill 0 replay killed/trace.txt
check "  ... naming its line" grep -q "killed/trace.txt: line [0-9]*: NUL bytes from here on" repkill.out
check "  ... the killed run's directory is not reused" run rekill 2 soak --ops 10 "${small[@]}" --dir killed
check "  ... because it did not finish" grep -q "that did not finish" rekill.err

# ---- progress -----------------------------------------------------------------------------------
check "without a terminal, --heartbeat 0.2 prints heartbeat lines" \
  run beat 0 soak --seconds 1.5 "${small[@]}" --dir beat --heartbeat 0.2
check "  ... of the documented form" grep -qE '^soak: after [0-9]+ s: [0-9]+ ops, [0-9]+ ops/s, [0-9]+ reads compared, [0-9]+ checks, [0-9]+ s left$' beat.out
check "  ... and no carriage returns" bash -c '! grep -q $'"'"'\r'"'"' beat.out'
script -qec "'$qvet' soak --seconds 1.5 ${small[*]} --dir tty" /dev/null > tty.out 2>&1
check "on a terminal, a status line rewritten in place" grep -qE $'\rsoak: [0-9]+ ops, [0-9]+ ops/s, [0-9]+ reads compared, [0-9]+ checks, [0-9]+ s left\e\\[K' tty.out
check "  ... and no heartbeat lines" bash -c '! grep -q "soak: after" tty.out'

# ---- the configuration matrix, the watchdog ------------------------------------------------------
check "--config list names the matrix" run clist 0 soak --config list
check "  ... every entry, with its options" bash -c '[ "$(wc -l < clist.out)" -ge 20 ] &&
  grep -q "^xl2-backing  *-o cluster_size=32k,extended_l2=on --backing qcow2" clist.out &&
  grep -q "^cache-tiny .* --cache 8192$" clist.out'
check "an unknown --config exits 2 with one line" run cbad 2 soak --config nope
check "  ... one line" one_line cbad.err
check "--config all runs every entry" run call 0 soak --config all --ops 22 --check-every 0 --dir matrix
check "  ... each in its own directory, each passed" bash -c '
  [ "$(ls -d matrix/[0-9][0-9]-* | wc -l)" -eq "$(wc -l < clist.out)" ] &&
  ! grep -L "\"verdict\": \"passed\"" matrix/[0-9][0-9]-*/summary.json | grep -q .'
check "  ... summary.json lists the configurations that ran" \
  test "$(json matrix/summary.json 'len(d["configs"]), d["verdict"], d["tool"]')" = "$(wc -l < clist.out) passed soak"
check "  ... the closing line covers them all" grep -q "^soak: passed: all $(wc -l < clist.out) configurations" call.out
# Lazy refcounts exist for crashes: their entries cut the power four times as often.
crash_ops() { grep -cE '^[0-9]+ (power-cut|dirty-reopen)( compare [0-9]+/[0-9]+)?$' "$1/trace.txt"; }
four_times() {
  local lazy eager
  lazy=$(crash_ops lazy) eager=$(crash_ops eager)
  echo "crash ops in 2000: zstd-lazy $lazy, r8 $eager"
  [ "$eager" -gt 0 ] && [ $((lazy * 10)) -ge $((eager * 25)) ]
}
# (torn power cuts left out: those after frees come whatever the weights)
no_torn=(--ops 2000 --check-every 0 --weights torn-power-cut=0)
check "a lazy-refcount entry passes with its crash ops" \
  run lazy 0 soak --config zstd-lazy "${no_torn[@]}" --dir lazy
check "  ... another entry, with the usual weights" \
  run eager 0 soak --config r8 "${no_torn[@]}" --dir eager
check "  ... the lazy one cut the power at least 2.5 times as often" four_times
# A bound of a microsecond: the first op the watchdog sees running is a "hang".
check "a hang is stopped by the watchdog (exit 1)" run hang 1 soak --ops 500 "${small[@]}" --hang-seconds 0.000001 --dir hang
check "  ... naming the op and showing the stack" bash -c '
  grep -qE "^qvet soak: hung at op [0-9]+ \(" hang.out && grep -q "soak_run" hang.out &&
  grep -q "soak_run" hang/hang-stack.txt'
check "  ... summary.json says hung, kind hang, with the reason" \
  test "$(json hang/summary.json 'd["verdict"], d["kind"], d["reason"][:21]')" = "hung hang qvet soak: hung at op"

# ---- make soak beside a person's files ----------------------------------------------------------
mkdir reports && echo precious > reports/notes.txt
build=$(dirname "$qvet")
for i in 1 2; do
  make -s -C "$src" soak BUILD="$build" SOAK_DIR="$work/reports" \
       SOAK_ARGS="--ops 200 ${small[*]}" > "make$i.out" 2>&1
  check "make soak run $i exits 0" test $? -eq 0
done
check "  ... the person's file in SOAK_DIR untouched" test "$(cat reports/notes.txt)" = precious
check "  ... each run in its own directory, latest the newest" \
  test -f reports/run-0001/summary.json -a -f reports/run-0002/summary.json -a "$(readlink reports/latest)" = run-0002
check "  ... each rotating through the matrix" \
  test -f reports/run-0001/01-xl2-backing/trace.txt -a -f reports/run-0002/01-xl2-backing/trace.txt

echo "$failures failed"
[ "$failures" -eq 0 ]
