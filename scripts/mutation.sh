#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules where a wrong result would be silent. Not part of CI: slow.
#
#   scripts/mutation.sh                      # every default module, one after the other
#   scripts/mutation.sh images postprocess   # only these
#   scripts/mutation.sh 'trace:tests/test_trace.py,tests/test_explain_5_8.py'   # own test selection
#
# Each module runs in its own folder mutants/<module>/ (git-ignored) holding a copy of detr_viz/,
# tests/ and pyproject.toml, whose [tool.mutmut] section gets that module's `only_mutate` and
# test selection. Results are kept there, so a rerun only retests what changed. Afterwards:
#   (cd mutants/<module> && mutmut results)            # the survivors
#   (cd mutants/<module> && mutmut show <mutant name>) # the diff of one
#
# Environment: MUTATION_JOBS (parallel children, default 1: the machine is shared),
# MUTATION_TIMEOUT (seconds per module, default 3600). Scores and verdicts: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${MUTATION_JOBS:-1}
LIMIT=${MUTATION_TIMEOUT:-3600}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1

# The tests that exercise each module (its own and the end-to-end ones that check its result).
tests_of() {
  case $1 in
    images)       echo tests/test_images.py tests/test_guards.py ;;
    postprocess)  echo tests/test_postprocess.py \
                       tests/test_official_reference.py::test_merge_matches_the_official_post_processor ;;
    segmentation) echo tests/test_model.py tests/test_official_reference.py ;;
    trace)        echo tests/test_trace.py ;;
    weights)      echo tests/test_weights.py ;;
    checkpoint)   echo tests/test_checkpoint.py tests/test_weights.py ;;
    hashing)      echo tests/test_hashing.py tests/test_weights.py ;;
    store)        echo tests/test_store.py ;;
  esac
  echo "tests/test_mutants_$1.py"
}

# --verify <module> [mutant glob ...]: rerun the survivors of the last run of <module> (or the
# mutants named) against the module's test selection as it is now, without regenerating anything.
# This is how a new test is shown to kill the mutant it targets.
if [ "${1:-}" = "--verify" ]; then
  name=${2:?usage: scripts/mutation.sh --verify <module> [mutant glob ...]}; shift 2
  work=mutants/$name
  [ -d "$work/mutants" ] || { echo "run scripts/mutation.sh $name first" >&2; exit 2; }
  all=" $(tests_of "$name" | tr '\n' ' ') "
  tests=()                                             # the targeted tests first: a kill stops early
  for t in "tests/test_mutants_$name.py" tests/test_guards.py $all; do
    [ -f "${t%%::*}" ] && [[ " ${tests[*]} " != *" $t "* ]] && [[ $all == *" $t "* ]] && tests+=("$t")
  done
  if [ -n "${MUTATION_VERIFY_TESTS:-}" ]; then read -ra tests <<< "$MUTATION_VERIFY_TESTS"; fi   # e.g. only the new tests
  cp tests/*.py "$work/mutants/tests/"
  (cd "$work" && mutmut results) | awk -F': ' '$2 == "survived" || $2 == "timeout" || $2 == "suspicious" || $2 == "no tests" {gsub(/ /, "", $1); print $1}' > "$work/survivors.txt"
  (cd "$work" && mutmut results) | sed 's/^ *//' > "$work/results.txt"
  cd "$work/mutants"
  exec python - "$@" "--" "${tests[@]}" <<'EOF_PY'
import fnmatch, os, signal, sys
sep = sys.argv.index("--")
globs, tests = sys.argv[1:sep], sys.argv[sep + 1:]
names = [n for n in open("../survivors.txt").read().split()]
only = os.environ.get("MUTATION_VERIFY_STATUS")     # e.g. "survived": leave timeouts and no-test mutants out
if only:
    names = [n for n, s in (line.split(": ") for line in open("../results.txt").read().splitlines()) if s == only]
if globs:   # named mutants: from every mutant of the module, not only the survivors
    import re
    src = open(f"detr_viz/{os.path.basename(os.path.dirname(os.getcwd()))}.py").read()
    every = sorted(set(re.findall(r"'(x\w+__mutmut_\d+)'", src)))
    mod = "detr_viz." + os.path.basename(os.path.dirname(os.getcwd()))
    names = [f"{mod}.{n}" for n in every if any(fnmatch.fnmatch(f"{mod}.{n}", g) for g in globs)]
import pytest, torch, torchvision, numpy, PIL.Image  # noqa: E401,F401 - imported once, before the forks
killed = []
for name in names:
    pid = os.fork()
    if pid == 0:
        os.environ["MUTANT_UNDER_TEST"] = name
        signal.alarm(int(os.environ.get("MUTATION_VERIFY_TIMEOUT", "300")))   # a real hang: killed by SIGALRM
        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)
        os._exit(int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-m", "not browser", *tests])))
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    verdict = {0: "survived", 1: "killed", -signal.SIGALRM: "timeout"}.get(code, f"error {code}")
    killed += [name] if code == 1 else []
    print(f"{verdict:9s} {name}", flush=True)
print(f"{len(killed)} of {len(names)} killed")
EOF_PY
fi

if [ $# -eq 0 ]; then
  set -- images postprocess segmentation trace
  if [ -f detr_viz/checkpoint.py ]; then set -- "$@" checkpoint hashing; else set -- "$@" weights; fi
  if [ -f detr_viz/store.py ]; then set -- "$@" store; fi
fi

summary=()
for spec in "$@"; do
  name=${spec%%:*}
  name=${name#detr_viz/}; name=${name%.py}
  if [ ! -f "detr_viz/$name.py" ]; then echo "no module detr_viz/$name.py" >&2; exit 2; fi
  if [[ $spec == *:* ]]; then selection=${spec#*:}; selection=${selection//,/ }; else selection=$(tests_of "$name"); fi
  tests=()
  for t in $selection; do [ -f "${t%%::*}" ] && tests+=("$t"); done
  if [ ${#tests[@]} -eq 0 ]; then echo "no tests found for $name ($selection)" >&2; exit 2; fi

  work=mutants/$name
  echo "== detr_viz/$name.py  tests: ${tests[*]}  (in $work)"
  mkdir -p "$work"
  rm -rf "$work/detr_viz" "$work/tests"
  cp -a detr_viz tests "$work/"                     # -a keeps mtimes: mutmut retests only changes
  [ -e "$work/assets" ] || ln -s "$ROOT/assets" "$work/assets"
  python - "$work" "$name" "${tests[@]}" <<'EOF'
import json, pathlib, sys
work, name, tests = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
lines = pathlib.Path("pyproject.toml").read_text().splitlines()
at = lines.index("[tool.mutmut]") + 1
lines[at:at] = [f"only_mutate = {json.dumps([f'detr_viz/{name}.py'])}",
                f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
                'also_copy = ["assets"]']
(work / "pyproject.toml").write_text("\n".join(lines) + "\n")
EOF
  rc=0
  (cd "$work" && timeout "$LIMIT" mutmut run --max-children "$JOBS") || rc=$?
  if [ $rc -ne 0 ]; then echo "mutmut run failed for $name (exit $rc)" >&2; summary+=("$name: run failed ($rc)"); continue; fi
  (cd "$work" && mutmut export-cicd-stats >/dev/null && mutmut results)
  summary+=("$name: $(python -c 'import json,sys; s=json.load(open(sys.argv[1]))
print(", ".join(f"{k} {v}" for k, v in s.items()))' "$work/mutants/mutmut-cicd-stats.json")")
done
echo
echo "== summary"
printf '%s\n' "${summary[@]}"
