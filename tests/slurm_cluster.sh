#!/usr/bin/env bash
# Start or stop the real single-node SLURM cluster that the `slurm` test tier runs against.
#   tests/slurm_cluster.sh up     # munge + MariaDB + slurmdbd + slurmctld + slurmd on localhost (root)
#   tests/slurm_cluster.sh down   # stop them (extra arguments, e.g. --purge, are passed through)
# Then: pytest -m slurm tests/test_slurm_submit.py
# The scripts live in ../shared/tools (beside the repository); environment knobs are documented there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=${FM4NPP_SLURM_TOOLS:-$here/../../shared/tools}
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)   script=local_slurm_up.sh ;;
  down) script=local_slurm_down.sh ;;
  *) echo "usage: $0 up|down [args...]" >&2; exit 2 ;;
esac
if [ ! -x "$tools/$script" ] && [ ! -f "$tools/$script" ]; then
  echo "$0: $tools/$script not found: the local SLURM tools are not in this checkout" \
       "(set FM4NPP_SLURM_TOOLS to the directory holding local_slurm_up.sh / local_slurm_down.sh)" >&2
  exit 1
fi
exec bash "$tools/$script" "$@"
