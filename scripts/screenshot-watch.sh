#!/usr/bin/env bash
# The README's screenshot of `classkeys watch`: a sandbox class of 12 in tmux, some spend, one
# raised limit, captured with colours and rendered to docs/watch.png.
# Needs tmux, python3 with pyte and pillow, DejaVu Sans Mono; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin="$PWD/target/release/classkeys"
dir=$(mktemp -d)
trap 'tmux kill-session -t ckwatch 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
export CLASSKEYS_SANDBOX=1 TZ=UTC
cat > roster.csv <<'CSV'
email,name
ada.lovelace@example.edu,Ada Lovelace
alan.turing@example.edu,Alan Turing
grace.hopper@example.edu,Grace Hopper
edsger.dijkstra@example.edu,Edsger Dijkstra
barbara.liskov@example.edu,Barbara Liskov
kim.lee@example.edu,Kim Lee
donald.knuth@example.edu,Donald Knuth
margaret.hamilton@example.edu,Margaret Hamilton
john.backus@example.edu,John Backus
frances.allen@example.edu,Frances Allen
ken.thompson@example.edu,Ken Thompson
new.student@example.edu,New Student
CSV
"$bin" init-db --class CS101-A >/dev/null 2>&1
head -12 roster.csv > r && mv r roster.csv
"$bin" provision --limit 2 >/dev/null 2>&1
printf 'new.student@example.edu,New Student\n' >> roster.csv
for s in ada.lovelace:2.00 alan.turing:1.70 grace.hopper:0.95 edsger.dijkstra:1.70 kim.lee:1.20 donald.knuth:0.10; do
  "$bin" sandbox spend --email "${s%%:*}@example.edu" --amount "${s##*:}" >/dev/null 2>&1
done
tmux new-session -d -s ckwatch -x 110 -y 22 "cd $dir && CLASSKEYS_SANDBOX=1 $bin watch --every 20"
sleep 2
tmux send-keys -t ckwatch j
sleep 0.5
tmux send-keys -t ckwatch +
sleep 3
tmux capture-pane -e -p -t ckwatch > capture.txt
tmux send-keys -t ckwatch q
cd - >/dev/null
python3 scripts/ansi2png.py "$dir/capture.txt" docs/watch.png 110 22
echo "wrote docs/watch.png"
