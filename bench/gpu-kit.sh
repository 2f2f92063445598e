#!/usr/bin/env bash
# Packs what bench/gpu-run.sh needs on a GPU machine that has no network and no Node (the device machines lent to
# some sessions: see BENCHMARKS.md, "GPU") into .device/kit.tar.xz, which git ignores: this Node binary, the built
# dist/, the node_modules files that the GPU bench, the agreement check and ../shared/gpu/webgpu-smoke.mjs open
# (recorded with strace from tiny runs on SwiftShader, so the kit holds megabytes, not node_modules' hundreds), the
# Vulkan loader, and the smoke script. Needs strace, xz and Debian's chromium (SwiftShader); about 10 minutes.
# Then: the device tool's run with carry [".device"] and command `bash bench/gpu-run.sh`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
KIT=.device
ICD=$(dpkg -L chromium-common | grep vk_swiftshader_icd.json)
SMOKE=$ROOT/../shared/gpu/webgpu-smoke.mjs
npm run build --silent
rm -rf "$KIT" && mkdir -p "$KIT/trace"
export VK_ICD_FILENAMES=$ICD XDG_RUNTIME_DIR=$(mktemp -d)
trace() { strace -f -qq -e trace=openat -o "$KIT/trace/$1" "${@:2}" >/dev/null; }
trace smoke node "$SMOKE"
for backend in wasm webgpu; do
  trace "agreement-$backend" node dist/bench/bench.js --agreement-side "{\"shape\":\"bert-tiny\",\"steps\":1,\"backend\":\"$backend\"}"
done
# Every file under node_modules that a traced process opened (not the failed probes), relative to the root.
grep -h -v ENOENT "$KIT"/trace/* | grep -o "\"$ROOT/node_modules/[^\"]*\"" | tr -d '"' | sed "s|^$ROOT/||" | sort -u >"$KIT/files"
mkdir -p "$KIT/pack/bin" "$KIT/pack/lib"
cp "$(readlink -f "$(command -v node)")" "$KIT/pack/bin/node"
cp "$(readlink -f /usr/lib/x86_64-linux-gnu/libvulkan.so.1)" "$KIT/pack/lib/libvulkan.so.1"
cp "$SMOKE" "$KIT/pack/"
tar -cf - dist $(cat "$KIT/files") | tar -xf - -C "$KIT/pack"
tar -cJf "$KIT/kit.tar.xz" -C "$KIT/pack" .
rm -rf "$KIT/pack" "$KIT/trace"
echo "$KIT/kit.tar.xz: $(du -h "$KIT/kit.tar.xz" | cut -f1) ($(wc -l <"$KIT/files") files from node_modules)"
