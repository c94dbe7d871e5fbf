#!/usr/bin/env bash
# Launches the whole pipeline on this machine:
#
#   loader --PUSH--> augmenter x N --PUSH--> trainer --PUSH--> evaluator
#      ^                  ^                    |
#      +------ SUB -------+------ PUB ---------+   (Control: stop, heartbeat)
#
# With no arguments: installs what is missing (make deps), builds, and trains
# SimCLR on Fashion-MNIST (Debian's dataset-fashion-mnist). See --help.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

FASHION=/usr/share/datasets/fashion-mnist
EVAL_WAIT_S=900   # the longest run.sh waits for the final evaluation
FINETUNE_PER_CLASS=10   # labels per class the evaluator fine-tunes the final checkpoint with
DEFAULT_MINUTES=7        # the training time without --epochs or --minutes: with the final
                         # evaluation, the default run ends within about 12 minutes on 2 cores
MAX_RESTARTS=3           # restarts of one augmenter that fails ...
RESTART_WINDOW_S=600     # ... within this long; one failure more stops the run

# The default host and ports are those every stage uses (cli/defaults.h), read
# there so that they cannot drift apart: loader P, trainer P+1, evaluator
# P+2, control P+3.
defaults_h=cli/defaults.h
default_of() {
    local v
    v=$(sed -n "s/^#define $1 *\([0-9][0-9]*\|\"[^\"]*\"\).*/\1/p" "$defaults_h" 2>/dev/null)
    v=${v//\"/}
    [ -n "$v" ] || { echo "run.sh: cannot read $1 from $here/$defaults_h" >&2; exit 1; }
    echo "$v"
}
DEFAULT_HOST=$(default_of CLI_HOST)
DEFAULT_PORT_BASE=$(default_of CLI_PORT_LOADER)

usage() {
    cat <<EOF
usage: ./run.sh [options]

Starts the loader, N augmenters, the trainer and (when built) the evaluator with
consistent endpoints, prefixes each log line with its stage's name, forwards
Ctrl-C, and stops every stage it started when it exits. An augmenter that fails
is started again (at most $MAX_RESTARTS times in $((RESTART_WINDOW_S / 60)) minutes); any other stage that fails
stops the run. Exit status is non-zero when a stage fails.

Data and method:
  --data PATH          training images: class folders, IDX or CIFAR batches
                       (default $FASHION, Fashion-MNIST's train files)
  --test-data PATH     labeled test set for the evaluator (default: Fashion-MNIST's
                       t10k files when --data is the default; otherwise a
                       class-balanced part of --data, held out of training)
  --test-fraction F    that held-out part's share of --data (default 0.1)
  --method M           simclr, rotnet, supervised or pretext (default simclr): the
                       augmenters' recipe and the trainer's method. supervised
                       trains on the labels (one cropped and flipped view per
                       image, cross-entropy), the baseline for the others;
                       add --trainer-opts "--classes N" when there are not 10.
                       pretext classifies the views by the random choices of
                       the --recipe items marked :target
  --recipe R           the augmenters' recipe (default: the method's name);
                       needed by pretext, e.g.
                       'views=2,crop:scale=0.35-1,flip:target,rotate:k=random:target'
                       (8 classes; docs/augment/README.md)
  --minutes M          train for M minutes (may be fractional, e.g. 60 or 0.5;
                       default $DEFAULT_MINUTES): the trainer plans its schedule's length
                       from the rate it measures, so the run fits the time on
                       any CPU; the loader streams epochs until the trainer stops
  --epochs E           or train for E epochs instead, the same on any CPU (may be
                       fractional, e.g. 3 or 0.5)
  --arch A             resnet-mini, conv4 or a network description file (default resnet-mini)
  --width W            width of the first stage (default 16)
  --batch N            images per training step (default 128 for simclr, 256 otherwise)
  --size S             side of the augmented views (default: 28 for Fashion-MNIST, else 32)
  --channels C         1 or 3 channels (default: 1 for Fashion-MNIST, else 3)
  --augmenters N       augmenter worker processes on this machine (default 1)
  --seed N             seed of the shuffle, the augmentations and the initial
                       weights (default 1); the views depend only on it and on
                       (epoch, image, view), not on which augmenter made them
  --out DIR            run folder for metrics, checkpoints and the evaluator's report
                       (report/index.html: one page to open in a browser; default
                       runs/<date-time>)
  --resume P           continue from checkpoint P, or 'latest' (of --out)
  --trainer T          c (build/bin/trainer) or torch: the PyTorch trainer of
                       examples/torch_trainer in its place, with the same options
                       (CUDA when present; --arch also takes torchvision:NAME;
                       needs python3-torch, no --curve) (default c)

Network:
  --bind-host H        address the bound sockets listen on (default $DEFAULT_HOST);
                       use this machine's address so that augmenters on other
                       machines can connect
  --curve DIR          encrypt and authenticate every socket with CURVE, with the
                       keys in DIR; servers accept only the clients in DIR/allowed/
  --keygen DIR         make a new key folder DIR for --curve (and exit); then
                       build/bin/keygen --client NAME DIR adds a client for another
                       machine (copy DIR/clients/NAME there)
  --port-base P        loader P, trainer P+1, evaluator P+2, control P+3 (default $DEFAULT_PORT_BASE);
                       with --trainers N, the trainer's rank r >= 1 listens on P+3+r

Several trainer processes (one model, data-parallel over MPI; README, "Training
on several machines"):
  --trainers N         start the trainer with mpirun -np N (default 1: no MPI);
                       --batch stays the global batch and must be a multiple of N;
                       every augmenter deals its views to all N ranks
  --hostfile FILE      mpirun's host file ("host slots=K" lines; the first host is
                       this machine, which runs rank 0); ranks are placed by slot
                       in the file's order, and ranks off this machine listen on
                       every interface
  --sync-bn            batch norm over the whole global batch (trainer --sync-bn)

Passing options to one stage:
  --loader-opts "..."     --augmenter-opts "..."
  --trainer-opts "..."    --evaluator-opts "..."
                          (the evaluator fine-tunes the final checkpoint with
                          $FINETUNE_PER_CLASS labels per class; more with e.g.
                          --evaluator-opts "--finetune 0.01,0.1 --finetune-per-class 10,100")

  --no-build           do not run make deps / make first
  --help               this text

Adding augmenters on a second machine (after ./run.sh --bind-host <this-ip>):
  build/bin/augmenter --connect tcp://<this-ip>:$DEFAULT_PORT_BASE --push tcp://<this-ip>:$((DEFAULT_PORT_BASE + 1)) \\
      --control tcp://<this-ip>:$((DEFAULT_PORT_BASE + 3)) --workers 2
and with --curve DIR here, add: --curve <copy of DIR/clients/NAME>
EOF
}

die_usage() {
    echo "run.sh: $*" >&2
    echo "run.sh: see ./run.sh --help" >&2
    exit 2
}

data=""
test_data=""
test_fraction=0.1
method=simclr
recipe=""
epochs=3
epochs_given=0
minutes=""
arch=resnet-mini
width=16
batch=""
batch_given=0
size=""
channels=""
augmenters=1
seed=1
out=""
resume=""
bind_host=$DEFAULT_HOST
port_base=$DEFAULT_PORT_BASE
loader_opts=""
augmenter_opts=""
trainer_opts=""
evaluator_opts=""
curve=""
keygen=""
build=1
trainer_kind=c
trainers=1
hostfile=""
sync_bn=0

need() { [ $# -ge 2 ] || die_usage "option $1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --data) need "$@"; data=$2; shift 2 ;;
    --test-data) need "$@"; test_data=$2; shift 2 ;;
    --test-fraction) need "$@"; test_fraction=$2; shift 2 ;;
    --method) need "$@"; method=$2; shift 2 ;;
    --epochs) need "$@"; epochs=$2; epochs_given=1; shift 2 ;;
    --minutes) need "$@"; minutes=$2; shift 2 ;;
    --recipe) need "$@"; recipe=$2; shift 2 ;;
    --arch) need "$@"; arch=$2; shift 2 ;;
    --width) need "$@"; width=$2; shift 2 ;;
    --batch) need "$@"; batch=$2; batch_given=1; shift 2 ;;
    --size) need "$@"; size=$2; shift 2 ;;
    --channels) need "$@"; channels=$2; shift 2 ;;
    --augmenters) need "$@"; augmenters=$2; shift 2 ;;
    --seed) need "$@"; seed=$2; shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --resume) need "$@"; resume=$2; shift 2 ;;
    --bind-host) need "$@"; bind_host=$2; shift 2 ;;
    --port-base) need "$@"; port_base=$2; shift 2 ;;
    --curve) need "$@"; curve=$2; shift 2 ;;
    --keygen) need "$@"; keygen=$2; shift 2 ;;
    --loader-opts) need "$@"; loader_opts=$2; shift 2 ;;
    --augmenter-opts) need "$@"; augmenter_opts=$2; shift 2 ;;
    --trainer-opts) need "$@"; trainer_opts=$2; shift 2 ;;
    --evaluator-opts) need "$@"; evaluator_opts=$2; shift 2 ;;
    --trainer) need "$@"; trainer_kind=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --trainers) need "$@"; trainers=$2; shift 2 ;;
    --hostfile) need "$@"; hostfile=$2; shift 2 ;;
    --sync-bn) sync_bn=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
    esac
done

case "$trainer_kind" in c | torch) ;; *) die_usage "--trainer must be c or torch, not '$trainer_kind'" ;; esac
[ "$trainer_kind" = c ] || [ -z "$curve" ] || die_usage "--curve needs the C trainer (--trainer c)"
[ "$trainer_kind" = c ] || { [ "$trainers" = 1 ] && [ -z "$hostfile" ] && [ "$sync_bn" -eq 0 ]; } ||
    die_usage "--trainers, --hostfile and --sync-bn need the C trainer (--trainer c)"
case "$method" in simclr | rotnet | supervised | pretext) ;; *) die_usage "--method must be simclr, rotnet, supervised or pretext, not '$method'" ;; esac
[ "$method" != pretext ] || [ -n "$recipe" ] ||
    die_usage "--method pretext needs --recipe with ':target' items, e.g. --recipe 'views=2,crop:scale=0.35-1,flip:target,rotate:k=random:target'"
[ "$method" != pretext ] || [ "$trainer_kind" = c ] || die_usage "--method pretext needs the C trainer (--trainer c)"
recipe=${recipe:-$method}
[[ "$augmenters" =~ ^[1-9][0-9]*$ ]] || die_usage "--augmenters must be a positive number, not '$augmenters'"
[[ "$test_fraction" =~ ^0?\.[0-9]+$ ]] || die_usage "--test-fraction must be a fraction such as 0.1, not '$test_fraction'"
[[ "$seed" =~ ^[0-9]+$ ]] || die_usage "--seed must be a whole number, not '$seed'"
if [ -z "$batch" ]; then
    if [ "$method" = simclr ]; then batch=128; else batch=256; fi
fi
for opt in width batch; do
    [[ "${!opt}" =~ ^[1-9][0-9]{0,8}$ ]] || die_usage "--$opt must be a positive whole number, not '${!opt}'"
done
[[ "$epochs" =~ ^(0|[1-9][0-9]{0,8})(\.[0-9]+)?$ ]] && [[ "$epochs" =~ [1-9] ]] ||
    die_usage "--epochs must be a positive number such as 3 or 0.5, not '$epochs'"
# the loader streams whole epochs: the trainer's last one, when fractional, in full
epochs_whole=${epochs%%.*}
[[ "$epochs" != *.* ]] || [[ "${epochs#*.}" =~ ^0+$ ]] || epochs_whole=$((epochs_whole + 1))
if [ -n "$minutes" ]; then
    [[ "$minutes" =~ ^(0|[1-9][0-9]{0,6})(\.[0-9]+)?$ ]] && [[ "$minutes" =~ [1-9] ]] ||
        die_usage "--minutes must be a positive number such as 60 or 0.5, not '$minutes'"
    [ "$epochs_given" -eq 0 ] || die_usage "give --epochs or --minutes, not both"
elif [ "$epochs_given" -eq 0 ]; then
    minutes=$DEFAULT_MINUTES
fi
[ -z "$size" ] || [[ "$size" =~ ^[1-9][0-9]{0,3}$ ]] || die_usage "--size must be a whole number from 1 to 9999, not '$size'"
case "$channels" in "" | 1 | 3) ;; *) die_usage "--channels must be 1 or 3, not '$channels'" ;; esac
[[ "$port_base" =~ ^[0-9]+$ ]] && [ "$port_base" -gt 0 ] && [ "$port_base" -lt 65533 ] ||
    die_usage "--port-base must be a port number, not '$port_base'"
[[ "$trainers" =~ ^[1-9][0-9]{0,3}$ ]] || die_usage "--trainers must be a positive number, not '$trainers'"
[ $((batch % trainers)) -eq 0 ] ||
    die_usage "--batch $batch is not a multiple of --trainers $trainers (each rank takes batch/$trainers images a step); give for example --batch $(((batch / trainers + 1) * trainers))"
[ $((port_base + 3 + trainers)) -lt 65536 ] || die_usage "--port-base $port_base leaves no port for $trainers trainer ranks"
if [ -n "$hostfile" ]; then
    [ -r "$hostfile" ] || die_usage "--hostfile $hostfile: not a readable file"
fi
if [ "$trainers" -gt 1 ] || [ -n "$hostfile" ]; then
    command -v mpirun >/dev/null || die_usage "--trainers $trainers needs mpirun: make deps installs Open MPI (openmpi-bin)"
fi

if [ "$build" -eq 1 ]; then
    make deps
    make -j"$(nproc)" all >/dev/null
fi
if [ -n "$keygen" ]; then
    [ -x build/bin/keygen ] || die_usage "build/bin/keygen is not built (run make, or drop --no-build)"
    exec build/bin/keygen "$keygen"
fi
curve_opt=()
if [ -n "$curve" ]; then
    [ -d "$curve" ] || die_usage "--curve $curve: no such folder (make one with ./run.sh --keygen $curve)"
    curve_opt=(--curve "$curve")
fi

default_data=0
if [ -z "$data" ]; then
    data=$FASHION
    default_data=1
fi
[ -e "$data" ] || die_usage "--data $data does not exist"
# Without a separate test set the evaluator tests on a seeded class-balanced
# part of --data; the loader leaves exactly that part out of training.
hold_out=()
if [ "$default_data" -eq 0 ] && [ -z "$test_data" ]; then
    hold_out=(--hold-out "$test_fraction")
fi
fashion=0
case "$data" in *fashion-mnist* | *mnist*) fashion=1 ;; esac
[ -n "$size" ] || { [ "$fashion" -eq 1 ] && size=28 || size=32; }
[ -n "$channels" ] || { [ "$fashion" -eq 1 ] && channels=1 || channels=3; }
[ -n "$out" ] || out=runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

bin=${BUILD:-build}/bin   # BUILD: another build folder's executables (as the tests use)
ep_loader="tcp://$bind_host:$port_base"
ep_trainer="tcp://$bind_host:$((port_base + 1))"
ep_evaluator="tcp://$bind_host:$((port_base + 2))"
ep_control="tcp://$bind_host:$((port_base + 3))"
# Connecting stages on this machine reach the bound sockets through loopback
# when the bind host is a wildcard.
reach_host=$bind_host
case "$bind_host" in '*' | 0.0.0.0) reach_host=127.0.0.1 ;; esac
to_loader="tcp://$reach_host:$port_base"
to_trainer="tcp://$reach_host:$((port_base + 1))"
to_evaluator="tcp://$reach_host:$((port_base + 2))"
to_control="tcp://$reach_host:$((port_base + 3))"

# The trainer's ranks: rank 0 here on ep_trainer, rank r >= 1 on port P+3+r of
# its host. Which host runs rank r: mpirun's default placement, by slot in the
# host file's order (each line "host slots=K" gives K ranks; no slots= is 1).
rank_hosts=()
if [ -n "$hostfile" ]; then
    while read -r h rest; do
        case "$h" in '' | '#'*) continue ;; esac
        k=$(sed -n 's/.*slots=\([0-9][0-9]*\).*/\1/p' <<<"$rest")
        for _ in $(seq 1 "${k:-1}"); do rank_hosts+=("$h"); done
    done <"$hostfile"
    [ "${#rank_hosts[@]}" -ge "$trainers" ] ||
        die_usage "--hostfile $hostfile has ${#rank_hosts[@]} slot(s) for $trainers ranks: add hosts or slots=K"
fi
trainer_bind=$ep_trainer
push_to=$to_trainer
for ((r = 1; r < trainers; r++)); do
    port=$((port_base + 3 + r))
    if [ -n "$hostfile" ]; then
        trainer_bind+=",tcp://*:$port"
        push_to+=",tcp://${rank_hosts[$r]}:$port"
    else
        trainer_bind+=",tcp://$bind_host:$port"
        push_to+=",tcp://$reach_host:$port"
    fi
done
launcher=()
trainer_stop=INT   # the signal that makes the trainer checkpoint and stop
if [ "$trainers" -gt 1 ] || [ -n "$hostfile" ]; then
    # ranks yield while they wait in a collective: the augmenters share the CPUs
    # its own session: a Ctrl-C in the terminal must not reach mpirun, which
    # would kill the ranks at once; run.sh's trap asks them to stop instead
    launcher=(setsid mpirun -np "$trainers" --oversubscribe --mca mpi_yield_when_idle 1)
    [ "$(id -u)" -eq 0 ] && launcher+=(--allow-run-as-root)
    [ -n "$hostfile" ] && launcher+=(--hostfile "$hostfile")
    trainer_stop=USR1   # mpirun kills its ranks on INT and TERM, and forwards USR1 to each
fi

pids=()
names=()
# start NAME CMD...: runs CMD in the background, its output prefixed with [NAME].
start() {
    local name=$1; shift
    echo "run.sh: starting $name: $*" >&2
    "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
    pids+=($!)
    names+=("$name")
}

cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    # Give each stage its bounded linger, then make sure nothing is left.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.3
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
interrupted() {
    echo "run.sh: interrupted; stopping the stages (the trainer writes a checkpoint)" >&2
    local i
    for i in "${!names[@]}"; do
        [ "${names[$i]}" = trainer ] && kill -"$trainer_stop" "${pids[$i]}" 2>/dev/null || true
    done
    wait "${trainer_pid:-0}" 2>/dev/null || true
    cleanup
    exit 130
}
trap cleanup EXIT
trap interrupted INT TERM

# The trainer needs the epoch size for its schedule; a resumed run continues
# the loader's epoch numbering (and so its shuffle order) where it stopped.
# shellcheck disable=SC2086
dataset_size=$("$bin/loader" --data "$data" "${hold_out[@]}" $loader_opts --count) ||
    die_usage "the loader cannot read --data $data (see the message above)"
start_epoch=0
if [ -n "$resume" ]; then
    ckpt=$resume
    [ "$resume" = latest ] && ckpt=$out/latest
    [ -e "$ckpt" ] || die_usage "--resume $resume: no checkpoint at $ckpt"
    if [ "$trainer_kind" = torch ]; then   # its checkpoints may hold a torchvision network nntool cannot build
        start_epoch=$(/usr/bin/python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n))["__metadata__"]["epoch"])' "$ckpt")
    else
        start_epoch=$("$bin/nntool" info "$ckpt" | sed -n 's/.*"epoch": *\([0-9]*\).*/\1/p')
    fi
    start_epoch=${start_epoch:-0}
fi
echo "run.sh: $dataset_size training images in $data; run folder $out" >&2

# The run's settings for the report page (evaluator/html.h), one JSON object.
json_str() {
    local v
    v=$(printf '%s' "$1" | tr -d '\000-\037')
    v=${v//\\/\\\\}
    printf '"%s"' "${v//\"/\\\"}"
}
{
    printf '{"format":"sslpipe-run","version":1,"started":%s' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
    for k in method recipe arch data test_data resume loader_opts augmenter_opts trainer_opts evaluator_opts; do
        v=${!k:-}
        printf ',"%s":%s' "$k" "$(json_str "$v")"
    done
    len_key=epochs
    [ -z "$minutes" ] || len_key=minutes   # a time budget's run has no epoch count
    for k in width batch "$len_key" seed augmenters trainers size channels dataset_size; do
        printf ',"%s":%s' "$k" "${!k}"
    done
    printf '}\n'
} > "$out/run.json.tmp" && mv "$out/run.json.tmp" "$out/run.json"

# preview_source DATA SCRATCH: the path of one training image for the
# augmentation preview: the first image file of a folder, or the first image
# of an IDX file written to SCRATCH as a PGM file; nothing for CIFAR batches.
preview_source() {
    local d=$1 f
    local -a cat=(cat)
    if [ -d "$d" ]; then
        f=$(find "$d" -maxdepth 2 -type f \( -iname '*.png' -o -iname '*.jp*g' -o -iname '*.p[gpn]m' \
            -o -iname '*.webp' -o -iname '*.tif*' -o -iname '*.bmp' \) -print -quit 2>/dev/null || true)
        if [ -n "$f" ]; then echo "$f"; return 0; fi
        f=$(find "$d" -maxdepth 1 -name 'train-images-idx3-ubyte*' -print -quit 2>/dev/null || true)
        [ -n "$f" ] || return 0
        d=$f
    fi
    case "$d" in *-idx3-ubyte) ;; *-idx3-ubyte.gz) cat=(gzip -dc) ;; *) return 0 ;; esac
    # header: magic 00 00 08 03, then count, rows, cols as big-endian 32-bit numbers
    local h
    read -r -a h < <("${cat[@]}" "$d" 2>/dev/null | head -c 16 | od -An -v -tu1 | tr '\n' ' ' || true)
    [ "${#h[@]}" -eq 16 ] && [ "${h[2]}" -eq 8 ] && [ "${h[3]}" -eq 3 ] || return 0
    local rows=$(((h[8] << 24) | (h[9] << 16) | (h[10] << 8) | h[11]))
    local cols=$(((h[12] << 24) | (h[13] << 16) | (h[14] << 8) | h[15]))
    { printf 'P5\n%d %d\n255\n' "$cols" "$rows"; "${cat[@]}" "$d" 2>/dev/null | head -c $((16 + rows * cols)) | tail -c $((rows * cols)) || true; } > "$2"
    echo "$2"
}
# The augmentation preview (augmenter --preview) of the report page, once per run folder.
if [ ! -s "$out/augment-preview.png" ]; then
    scratch=$out/.preview-source.pgm
    src=$(preview_source "$data" "$scratch")
    if [ -z "$src" ] || ! "$bin/augmenter" --preview "$src" -o "$out/augment-preview.png" --recipe "$recipe" \
        --size "$size" --seed "$seed" --quiet >/dev/null 2>"$out/.preview.log"; then
        echo "run.sh: no augmentation preview for $data${src:+ ($(head -c 300 "$out/.preview.log"))}" >&2
    fi
    rm -f "$scratch" "$out/.preview.log"
fi

# --exactly-once: the loader re-sends what a dead augmenter held, and a
# restarted loader continues at the trainer's epoch (README, "Faults"). It
# streams the trainer's epochs and no more: past the last one it only re-sends
# what is not trained yet, so that a next epoch cannot fill the trainer's last
# steps while some of the last one is still to come again. (Nothing left to
# train, after a resume: 0, until the trainer's stop.)
# A time budget's epochs are not known: the loader streams until the stop.
loader_epochs=$((epochs_whole - start_epoch))
[ "$loader_epochs" -gt 0 ] && [ -z "$minutes" ] || loader_epochs=0
# shellcheck disable=SC2086
start loader "$bin/loader" --data "$data" "${hold_out[@]}" --epochs "$loader_epochs" --start-epoch "$start_epoch" \
    --seed "$seed" --exactly-once --bind "$ep_loader" --control "$to_control" "${curve_opt[@]}" $loader_opts
# shellcheck disable=SC2206
augmenter_cmd=("$bin/augmenter" --connect "$to_loader" --push "$push_to" --control "$to_control"
    --recipe "$recipe" --size "$size" --channels "$channels" --seed "$seed" "${curve_opt[@]}" $augmenter_opts)
for i in $(seq 1 "$augmenters"); do
    name=augmenter; [ "$augmenters" -gt 1 ] && name=augmenter$i
    start "$name" "${augmenter_cmd[@]}"
done
evaluator_ep=none
evaluator_pid=""
if [ -x "$bin/evaluator" ]; then
    evaluator_ep=$to_evaluator
    # It listens to the trainer's stop too: it then evaluates the checkpoints
    # still waiting (the final one among them) and exits. It runs niced so
    # that training keeps the CPUs it needs.
    # The final checkpoint is fine-tuned with 10 labels per class against
    # training from scratch (90-94 s on Fashion-MNIST, width 16, on a busy
    # 2-core machine); larger subsets by
    # --evaluator-opts "--finetune 0.01,0.1", none by "--finetune-per-class none".
    eval_args=(--bind "$ep_evaluator" --control "$to_control" --out "$out" "${curve_opt[@]}"
        --finetune-per-class "$FINETUNE_PER_CLASS")
    [ "$default_data" -eq 1 ] || eval_args+=(--train-data "$data")
    [ -n "$test_data" ] && eval_args+=(--test-data "$test_data")
    [ "${#hold_out[@]}" -gt 0 ] && eval_args+=(--test-fraction "$test_fraction")
    # shellcheck disable=SC2086
    start evaluator nice -n 10 "$bin/evaluator" "${eval_args[@]}" $evaluator_opts
    evaluator_pid=${pids[-1]}
fi
# A resumed run keeps its batch unless --batch was given (the default may
# have changed since the run started).
batch_arg=(--batch "$batch")
[ -n "$resume" ] && [ "$batch_given" -eq 0 ] && batch_arg=()
length=(--epochs "$epochs")
[ -z "$minutes" ] || length=(--minutes "$minutes")
train_args=(--method "$method" --arch "$arch" --width "$width" "${batch_arg[@]}" "${length[@]}"
    --dataset-size "$dataset_size" --seed "$seed"
    --bind "$trainer_bind" --control "$ep_control" --evaluator "$evaluator_ep" --out "$out" "${curve_opt[@]}")
[ -n "$resume" ] && train_args+=(--resume "$resume")
[ "$sync_bn" -eq 1 ] && train_args+=(--sync-bn)
trainer_cmd=("${launcher[@]}" "$bin/trainer")
[ "$trainer_kind" = torch ] && trainer_cmd=(/usr/bin/python3 "$here/examples/torch_trainer/torch_trainer.py")
# shellcheck disable=SC2086
start trainer "${trainer_cmd[@]}" "${train_args[@]}" $trainer_opts
trainer_pid=${pids[-1]}

# restart_augmenter I RC: starts the augmenter pids[I] again, under the same
# name, unless it has had MAX_RESTARTS restarts within RESTART_WINDOW_S (then
# returns 1). Whatever it held, the loader sends again (--exactly-once).
declare -A restarted=()   # I -> the times ($SECONDS) of its restarts
restart_augmenter() {
    local i=$1 rc=$2 name=${names[$1]} recent=() t
    for t in ${restarted[$i]:-}; do
        if [ $((SECONDS - t)) -lt "$RESTART_WINDOW_S" ]; then recent+=("$t"); fi
    done
    if [ "${#recent[@]}" -ge "$MAX_RESTARTS" ]; then
        echo "run.sh: $name exited with status $rc, after $MAX_RESTARTS restarts within" \
            "$((RESTART_WINDOW_S / 60)) minutes; giving up on it" >&2
        return 1
    fi
    recent+=("$SECONDS")
    restarted[$i]=${recent[*]}
    echo "run.sh: $name exited with status $rc; restarting it (restart ${#recent[@]} of $MAX_RESTARTS)" >&2
    "${augmenter_cmd[@]}" > >(sed -u "s/^/[$name] /") 2>&1 &
    pids[i]=$!
}

# Wait for the trainer. An augmenter that fails is restarted; any other stage
# that fails, or an augmenter out of restarts, ends the run.
status=0
declare -A finished=()
while kill -0 "$trainer_pid" 2>/dev/null; do
    for i in "${!pids[@]}"; do
        p=${pids[$i]}
        if [ "$p" = "$trainer_pid" ] || [ -n "${finished[$p]:-}" ] || kill -0 "$p" 2>/dev/null; then
            continue
        fi
        finished[$p]=1
        rc=0; wait "$p" || rc=$?
        [ "$rc" -eq 0 ] && continue
        case "${names[$i]}" in augmenter*) restart_augmenter "$i" "$rc" && continue ;; esac
        echo "run.sh: ${names[$i]} failed (exit status $rc); stopping" >&2
        status=1
        kill -"$trainer_stop" "$trainer_pid" 2>/dev/null || true
    done
    # 2>/dev/null: bash reports a stage killed by a signal ("line N: PID
    # Killed ...") once its next command ends, this sleep; run.sh says it better.
    { sleep 1; } 2>/dev/null
done
rc=0; wait "$trainer_pid" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "run.sh: trainer failed (exit status $rc)" >&2
    status=1
fi

# The trainer published STOP; give the loader and augmenters a moment to exit
# on their own, and the evaluator the time to evaluate the final checkpoint.
for _ in $(seq 1 20); do
    alive=0
    for p in "${pids[@]}"; do
        [ "$p" != "$trainer_pid" ] && [ "$p" != "${evaluator_pid:-}" ] && kill -0 "$p" 2>/dev/null && alive=1
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.25
done
if [ -n "${evaluator_pid:-}" ] && [ "$status" -eq 0 ] && kill -0 "$evaluator_pid" 2>/dev/null; then
    echo "run.sh: waiting for the evaluator to finish the final checkpoint (at most $EVAL_WAIT_S s)" >&2
    for _ in $(seq 1 "$EVAL_WAIT_S"); do
        kill -0 "$evaluator_pid" 2>/dev/null || break
        sleep 1
    done
    rc=0; wait "$evaluator_pid" 2>/dev/null || rc=$?
    [ "$rc" -eq 0 ] || { echo "run.sh: evaluator failed (exit status $rc)" >&2; status=1; }
fi
cleanup

metrics=$out/metrics.jsonl
if [ -s "$metrics" ]; then
    last=$(grep '"loss"' "$metrics" | tail -n 1)
    echo "run.sh: final metrics: $last"
fi
[ -e "$out/latest" ] && echo "run.sh: checkpoint: $(readlink -f "$out/latest")"
if [ -s "$out/report/summary.txt" ]; then
    echo "run.sh: evaluation ($out/report/summary.txt):"
    sed 's/^/    /' "$out/report/summary.txt"
elif [ -s "$out/eval.jsonl" ]; then
    echo "run.sh: evaluation: $(tail -n 1 "$out/eval.jsonl" | cut -c1-300)"
fi
[ -s "$out/report/index.html" ] && echo "run.sh: report page: $out/report/index.html"
exit $status
