#!/usr/bin/env bash
# Mutation check (mutmut) of the conductor, the library recommender and the control commands'
# schemas and parser, against the tests that cover them. Not part of `make test`: it reruns
# those tests once per mutant, which takes an hour or more on two cores.
#
#   tools/mutation.sh [SECONDS]      # time budget, default 5400; prints the kill rate
#
# It works on a copy of the tree in out/mutation/ (mutmut writes mutants/ there). Survivors:
#   cd out/mutation && ../../.venv/bin/python -m mutmut results
#   cd out/mutation && ../../.venv/bin/python -m mutmut show NAME     # the diff of one
# The slow tests (live sessions, renders) are left out; the test library is built once into
# out/mutation-library/ and reused (MOODSCORE_TEST_LIBRARY_CACHE), also across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=${PYTHON:-$root/.venv/bin/python}
budget=${1:-5400}
work=$root/out/mutation
library_cache=$root/out/mutation-library

rm -rf "$work"
mkdir -p "$work" "$library_cache"
# The tracked files as they are in the working tree (uncommitted edits included).
git ls-files -z daemon models scenes tests tools config.toml pyproject.toml |
    xargs -0 cp --parents -t "$work"
cat >>"$work/pyproject.toml" <<'EOF'

[tool.mutmut]
source_paths = ["daemon"]
only_mutate = ["daemon/conductor.py", "daemon/library/recommend.py", "daemon/control/commands.py"]
also_copy = ["models", "scenes", "config.toml", "tools"]
pytest_add_cli_args_test_selection = [
    "tests/test_conductor.py", "tests/test_control.py", "tests/test_library.py",
    "tests/test_scenes.py",
]
pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-q"]
EOF

cd "$work"
export PYO_GUI_WX=0 MOODSCORE_TEST_LIBRARY_CACHE=$library_cache
status=0
timeout --signal=INT "$budget" "$PY" -m mutmut run --max-children 2 >mutmut.log 2>&1 || status=$?
if ((status == 124)); then
    echo "mutation: the ${budget} s budget ran out; the figures cover the mutants tested so far"
elif ((status != 0)); then
    tail -n 30 mutmut.log >&2
    echo "mutation: mutmut exited with status $status (log: $work/mutmut.log)" >&2
fi
"$PY" -m mutmut export-cicd-stats >/dev/null
"$PY" - <<'EOF'
import json

s = json.load(open("mutants/mutmut-cicd-stats.json"))
# A mutant no test runs (no_tests) is as alive as one that survives them; a timeout or a
# crash of the tests is a kill (the mutant broke something).
caught = s["killed"] + s["timeout"] + s["segfault"]
alive = s["survived"] + s["no_tests"] + s["suspicious"]
print(json.dumps(s))
if caught + alive:
    print(
        f"mutation: {caught} of {caught + alive} mutants tested killed "
        f"({100 * caught / (caught + alive):.1f} %); {s['survived']} survived, "
        f"{s['no_tests']} with no test, {s['suspicious']} suspicious; "
        f"{s['total'] - caught - alive} of {s['total']} not tested"
    )
EOF
