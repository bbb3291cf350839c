#!/bin/bash
# The quickstart at two commits, alternated twice, in one venv on one otherwise idle machine.
#   git worktree add /tmp/oplearn-before BEFORE_COMMIT
#   bash benchmarks/quickstart_before_after.sh   (from the repository root; writes /tmp/qs/)
# "before" imports /tmp/oplearn-before/src through PYTHONPATH, "after" the checkout's editable install.
set -e
PY=$(pwd)/.venv/bin/python
mkdir -p /tmp/qs
for round in 1 2; do
  for side in before after; do
    if [ $side = before ]; then export PYTHONPATH=/tmp/oplearn-before/src; else unset PYTHONPATH; fi
    rm -rf /tmp/qs/$side-$round /tmp/qs/data-$side-$round
    /usr/bin/time -f "%e s wall" $PY -c "from oplearn.cli import run; run()" quickstart --out /tmp/qs/$side-$round --data-dir /tmp/qs/data-$side-$round > /tmp/qs/$side-$round.log 2>&1
    echo "$side $round done $(date +%T)"
  done
done
