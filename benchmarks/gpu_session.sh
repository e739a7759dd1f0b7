#!/usr/bin/env bash
# Everything that needs a GPU, in one call on a GPU machine (the `device` tool of this
# workplace; any CUDA machine with the GPU extras works the same). Logs and JSON go to
# $OUT (default gpu-out/).
#
# Here, before the call: ../shared/gpu/fetch-wheels.sh   (cuCIM, Dask, distributed into .whl/;
#                        it stops at once without .git/info: `mkdir -p .git/info` first)
# The call:              run(command="bash benchmarks/gpu_session.sh", carry=[".whl"])
# The wheels take ~42 MB of the call's 64 MiB carry, so imagecodecs (28 MB) stays behind: there
# tifffile deflates with Python's zlib, ~2.3x slower writes (benchmarks/README.md), which the
# plate benchmark's writer threads spread over the machine's 16 cores.
#
# 1. versions and devices; 2. the GPU tests with LIVEDEAD_REQUIRE_GPU=1 (a missing device
# fails instead of skipping); 3. CPU vs GPU backend on 2048² frames, resident and end to
# end (bench_gpu.py); 4. plate frames/s, one GPU with its cores vs CPU workers only
# (bench_dask.py --gpu); 5. the CPU table of issue 2 on that machine's 16 cores (the same
# bench_frame.py as on the 2-core VM: which goals a bigger CPU meets). Each step runs even
# if an earlier one failed; the exit status is the first failure's.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
status=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.txt, keep the first failure
    echo "== $1"
    "${@:2}" > "$OUT/$1.txt" 2>&1
    local rc=$?
    echo "rc=$rc" >> "$OUT/$1.txt"
    tail -n 25 "$OUT/$1.txt"
    [ $status -eq 0 ] && status=$rc
}
step info bash -c "nvidia-smi; python3 -m livedead_gpu info"
step gpu-tests env LIVEDEAD_REQUIRE_GPU=1 python3 -m pytest -q -m gpu tests
step bench-gpu python3 benchmarks/bench_gpu.py --size 2048 --json "$OUT/bench_gpu.json"
step bench-dask python3 benchmarks/bench_dask.py --gpu --no-memory --repeats 3 --json "$OUT/bench_dask.json"
step bench-cpu16 python3 benchmarks/bench_frame.py --config benchmarks/configs/article-nuclei.toml --no-memory \
    --json "$OUT/bench_cpu16.json"
exit $status
