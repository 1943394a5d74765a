#!/bin/bash
# usage: share_feature_nets.sh <workdir_root>/cpu
# Copies the FID feature network of each finished-or-started LT-GANs run of a seed into the
# not-yet-started workdirs of the same artefact and seed (same config, same images, same key):
# what eval.feature_net_cache does at later commits; d8d5545 reads a present file instead of training.
R=${1:?usage: share_feature_nets.sh WORKDIR_ROOT/cpu}
share() {  # artefact source_run seed runs...
  local art=$1 src=$R/$1/$2/feature_net.msgpack; shift 3
  [ -f "$src" ] || { echo "no $src"; return; }
  for run in "$@"; do
    d=$R/$art/$run
    if [ -d "$d/checkpoints" ] || [ -f "$d/feature_net.msgpack" ]; then continue; fi
    mkdir -p "$d" && cp "$src" "$d/feature_net.msgpack" && echo "copied $src -> $d"
  done
}
for s in 0 1 2; do
  share table3 ltgans_seed$s $s curl_seed$s lgm_seed$s
done
share table3 ltgans_seed0 0 no_lakd_seed0 finetune_seed0 joint_seed0
for s in 0 1 2; do
  share fig4b ltgans_beta1_seed$s $s no_lakd_beta1_seed$s ltgans_beta4_seed$s no_lakd_beta4_seed$s
done
