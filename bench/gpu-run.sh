#!/usr/bin/env bash
# On a GPU machine, from the repository root with .device/kit.tar.xz carried (bench/gpu-kit.sh): the adapters Dawn
# finds, then `bench --backend webgpu` at $SHAPE (default base), the vanilla/F/D agreement check there and the bench at
# $LARGE (default large), each under a time limit (seconds: BASE_S, AGREE_S, LARGE_S) so that what finished comes
# back. Everything lands in $OUT:
# gpu.txt (nvidia-smi), adapters.txt, bench.log, results.json and BENCHMARKS.md as the bench wrote them,
# agreement.json and agreement.log.
set -u
OUT=${OUT:-/tmp/childtune-gpu-out}
mkdir -p "$OUT"
KIT=/tmp/childtune-kit
rm -rf "$KIT" && mkdir -p "$KIT" && tar -xJf .device/kit.tar.xz -C "$KIT" || exit 1
# The kit's node_modules and dist, where the checkout has none of its own (a bare machine's copy), copied in, not
# linked: Node runs a linked module from its real path, and the bench, finding the repository from its own file,
# would then look for bench/results.json and BENCHMARKS.md in the kit. A developer's checkout keeps its own.
for d in node_modules dist; do
  if [ -L "$d" ]; then rm "$d"; fi
  if [ ! -e "$d" ]; then cp -a "$KIT/$d" "$d"; fi
done
export PATH=$KIT/bin:$PATH LD_LIBRARY_PATH=$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} XDG_RUNTIME_DIR=$(mktemp -d)
# NVIDIA's Vulkan driver where the image mounts it (Dawn finds it through the loader in the kit).
NV=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$NV" ] && export VK_DRIVER_FILES=$NV VK_ICD_FILENAMES=$NV
{ uname -a; nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv; } >"$OUT/gpu.txt" 2>&1
ls /usr/local/nvidia/share/vulkan/icd.d/ >>"$OUT/gpu.txt" 2>&1
{ timeout 60 node "$KIT/webgpu-smoke.mjs"; echo "exit $?"; VK_LOADER_DEBUG=error timeout 60 node "$KIT/webgpu-smoke.mjs" backend=vulkan; echo "exit $?"; } >"$OUT/adapters.txt" 2>&1
# The base row and the agreement first, then large: a command cut short by its limit still leaves the earlier ones.
bench() {
  timeout "$2" node dist/bench/bench.js --backend webgpu --shapes "$1" >>"$OUT/bench.log" 2>&1
  echo "bench $1: exit $?" >>"$OUT/bench.log"
  cp bench/results.json BENCHMARKS.md "$OUT/" 2>/dev/null
}
bench "${SHAPE:-base}" "${BASE_S:-150}"
timeout "${AGREE_S:-200}" node dist/bench/bench.js --backend webgpu --agreement --shapes "${SHAPE:-base}" >"$OUT/agreement.json" 2>"$OUT/agreement.log"
echo "exit $?" >>"$OUT/agreement.log"
bench "${LARGE:-large}" "${LARGE_S:-240}"
tail -n 5 "$OUT"/*.txt "$OUT"/*.log
