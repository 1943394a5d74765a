#!/bin/bash
# usage: share_feature_nets.sh <workdir_root>/cpu
# Copies the FID feature network of a seed's first run that has one (the LT-GANs run where it
# exists) into the not-yet-started workdirs of the same artefact and seed (same config, same
# images, same key): what eval.feature_net_cache does at later commits; d8d5545 reads a present
# file instead of training one.
R=${1:?usage: share_feature_nets.sh WORKDIR_ROOT/cpu}
share() {  # artefact seed runs... (the first run that has a feature network is the source)
  local art=$1 src=""; shift 2
  for run in "$@"; do
    [ -f "$R/$art/$run/feature_net.msgpack" ] && { src=$R/$art/$run/feature_net.msgpack; break; }
  done
  [ -n "$src" ] || { echo "no feature network yet for $art: $*"; return; }
  for run in "$@"; do
    d=$R/$art/$run
    if [ -d "$d/checkpoints" ] || [ -f "$d/feature_net.msgpack" ]; then continue; fi
    mkdir -p "$d" && cp "$src" "$d/feature_net.msgpack" && echo "copied $src -> $d"
  done
}
for s in 0 1 2; do
  share table3 $s ltgans_seed$s curl_seed$s lgm_seed$s
done
share table3 0 ltgans_seed0 curl_seed0 lgm_seed0 no_lakd_seed0 finetune_seed0 joint_seed0
for s in 0 1 2; do
  share fig4b $s ltgans_beta1_seed$s no_lakd_beta1_seed$s ltgans_beta4_seed$s no_lakd_beta4_seed$s
done
