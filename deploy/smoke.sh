#!/usr/bin/env bash
# deploy/smoke.sh: build the image from the repository's Dockerfile and run it for real.
#
#   sudo deploy/smoke.sh            # or as a member of the docker group (the stand-in base needs root)
#
# Checks: the build; the default command with a short traffic run (exit 0 and the summary line);
# the default command serving detached (HEALTHCHECK turns healthy, non-root user, /readyz on a
# 127.0.0.1-published port, docker stop exits 0 within the grace); the image size; a rebuild with no
# change is cached throughout. Prints a table (step, result, seconds); exit 0 all held, 1 a step
# failed, 2 no Docker daemon.
#
# The base is the Dockerfile's PYTHON_IMAGE default (PYTHON_IMAGE=... in the environment overrides it).
# When it can be neither found locally nor pulled, a stand-in, fakesvc-python:3.11-bookworm, is built
# from Debian's packages (debootstrap, root) and kept for the next run (docker rmi it to rebuild it).
# Everything else the script makes (containers, its network, its image tag, the dangling images of its
# builds, the debootstrap directory) is removed on exit, also when a step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STANDIN=fakesvc-python:3.11-bookworm
RUN_ID="fakesvc-smoke-$$"
TAG="fakesvc-smoke:$$"
NET="$RUN_ID"
TRAFFIC_CT="$RUN_ID-traffic"
SERVE_CT="$RUN_ID-serve"
STOP_GRACE_S=10
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fakesvc-smoke.XXXXXX")
CHROOT=""
IMAGES_BEFORE=""

say() { printf 'smoke: %s\n' "$*" >&2; }

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    docker rm -f -v "$TRAFFIC_CT" "$SERVE_CT" >/dev/null 2>&1
    docker network rm "$NET" >/dev/null 2>&1
    docker image rm "$TAG" >/dev/null 2>&1
    if [[ -n "$IMAGES_BEFORE" ]]; then   # dangling images (the build stage) that appeared during this run
        local id
        for id in $(docker images -q --no-trunc --filter dangling=true); do
            grep -qx "$id" <<<"$IMAGES_BEFORE" || docker image rm "$id" >/dev/null 2>&1
        done
    fi
    if [[ -n "$CHROOT" && -d "$CHROOT" ]]; then
        local mnt
        for mnt in $(awk -v d="$CHROOT" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
            umount -l "$mnt"
        done
        rm -rf --one-file-system "$CHROOT"
    fi
    say "logs of this run: $LOG_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    cat >&2 <<'EOF'
smoke: no Docker daemon answers (`docker info` failed). To get one on Debian:
  apt-get install docker.io             # the engine and the client
  dockerd >/var/log/dockerd.log 2>&1 &  # or: systemctl start docker
then run this script as root or as a member of the docker group.
EOF
    exit 2
fi

# ---- the table -------------------------------------------------------------------------------------
STEPS=() RESULTS=() SECONDS_TAKEN=() DETAILS=()
FAILED=0
DETAIL=""

# step NAME FUNCTION...: run it, record PASS/FAIL, its seconds and the DETAIL it set.
step() {
    local name=$1 start end result
    shift
    DETAIL=""
    say "== $name"
    start=$(date +%s.%N)
    if "$@"; then result=PASS; else result=FAIL; FAILED=1; fi
    end=$(date +%s.%N)
    STEPS+=("$name") RESULTS+=("$result") DETAILS+=("$DETAIL")
    SECONDS_TAKEN+=("$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')")
    say "   $result ${DETAIL:+($DETAIL)}"
    [[ $result == PASS ]]
}

skip() {
    STEPS+=("$1") RESULTS+=(SKIP) SECONDS_TAKEN+=(-) DETAILS+=("$2")
}

table() {
    local i
    printf '\n%-28s %-6s %8s  %s\n' step result seconds detail
    printf '%-28s %-6s %8s  %s\n' ---- ------ ------- ------
    for i in "${!STEPS[@]}"; do
        printf '%-28s %-6s %8s  %s\n' "${STEPS[$i]}" "${RESULTS[$i]}" "${SECONDS_TAKEN[$i]}" "${DETAILS[$i]}"
    done
}

# ---- the base image ----------------------------------------------------------------------------------
dockerfile_base() {
    sed -n 's/^ARG PYTHON_IMAGE=\(.*\)$/\1/p' Dockerfile | head -n 1
}

# The Debian mirror this machine's apt uses for bookworm (one-line and deb822 sources).
apt_mirror() {
    local mirror=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        mirror=$(awk 'BEGIN {RS = ""; IGNORECASE = 1}
            /(^|\n)Suites:[^\n]*(^|[ \t])bookworm([ \t]|\n|$)/ && !/(^|\n)Enabled:[ \t]*no/ {
                if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
                    uri = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", uri); print uri; exit
                }
            }' /etc/apt/sources.list.d/*.sources)
    fi
    if [[ -z "$mirror" ]]; then
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) break;
                               if ($(i + 1) == "bookworm") { print $i; exit } }')
    fi
    printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

build_standin() {
    if docker image inspect "$STANDIN" >/dev/null 2>&1; then
        DETAIL="stand-in $STANDIN reused (cached)"
        return 0
    fi
    if [[ $(id -u) != 0 ]] || ! command -v debootstrap >/dev/null 2>&1; then
        DETAIL="the stand-in needs root and debootstrap (apt-get install debootstrap)"
        return 1
    fi
    local mirror
    mirror=$(apt_mirror)
    say "building the stand-in $STANDIN from Debian bookworm at $mirror (debootstrap, a few minutes)"
    CHROOT=$(mktemp -d /var/tmp/fakesvc-standin.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$CHROOT/root" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1 || {
        DETAIL="debootstrap failed: $LOG_DIR/debootstrap.log"
        return 1
    }
    # This machine's own certificate authorities (e.g. a TLS-inspecting egress proxy), so that pip in
    # the build reaches PyPI as the host does. The stand-in is for local builds only.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$CHROOT/root/usr/local/share/ca-certificates/"
        chroot "$CHROOT/root" update-ca-certificates >>"$LOG_DIR/debootstrap.log" 2>&1
        say "the stand-in trusts this machine's local CAs: $(cd /usr/local/share/ca-certificates && echo *.crt)"
    fi
    chroot "$CHROOT/root" apt-get clean
    rm -rf "$CHROOT/root/var/lib/apt/lists/"* "$CHROOT/root/var/cache/apt/"*.bin "$CHROOT/root/var/log/"*.log
    tar --numeric-owner -C "$CHROOT/root" -c . |
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            - "$STANDIN" >/dev/null || { DETAIL="docker import failed"; return 1; }
    rm -rf --one-file-system "$CHROOT"
    CHROOT=""
    DETAIL="stand-in $STANDIN built from Debian bookworm ($mirror)"
}

BASE=""
choose_base() {
    local wanted=${PYTHON_IMAGE:-$(dockerfile_base)}
    if [[ -z "$wanted" ]]; then
        DETAIL="the Dockerfile has no ARG PYTHON_IMAGE=... for its base"
        return 1
    fi
    if docker image inspect "$wanted" >/dev/null 2>&1; then
        BASE=$wanted DETAIL="$BASE (present locally)"
        return 0
    fi
    if timeout 120 docker pull "$wanted" >"$LOG_DIR/pull.log" 2>&1; then
        BASE=$wanted DETAIL="$BASE (pulled)"
        return 0
    fi
    say "$wanted cannot be pulled ($(tail -n 1 "$LOG_DIR/pull.log")); using a local stand-in from Debian's packages"
    build_standin || return 1
    BASE=$STANDIN DETAIL="$wanted not pullable; $DETAIL"
}

# ---- the checks ----------------------------------------------------------------------------------------
build() {  # build LOG: the image from the repository's Dockerfile on $BASE, tagged $TAG
    DOCKER_BUILDKIT=0 docker build --build-arg "PYTHON_IMAGE=$BASE" -t "$TAG" . >"$1" 2>&1
}

first_build() {
    IMAGES_BEFORE=$(docker images -q --no-trunc --filter dangling=true)
    [[ -n "$IMAGES_BEFORE" ]] || IMAGES_BEFORE="none"
    build "$LOG_DIR/build.log" || { DETAIL="see $LOG_DIR/build.log: $(tail -n 1 "$LOG_DIR/build.log")"; return 1; }
    DETAIL="$TAG on $BASE"
}

traffic_run() {
    local status=0
    timeout 180 docker run --name "$TRAFFIC_CT" --network "$NET" "$TAG" \
        python /app/supervisor.py --rate 5 --count 20 --latency-scale 0 >"$LOG_DIR/traffic.log" 2>&1 || status=$?
    if [[ $status != 0 ]]; then
        DETAIL="exit $status: $(tail -n 1 "$LOG_DIR/traffic.log")"
        return 1
    fi
    if ! grep -q 'every checkout answered as expected' "$LOG_DIR/traffic.log"; then
        DETAIL="exit 0 but no summary line: $LOG_DIR/traffic.log"
        return 1
    fi
    DETAIL="exit 0: $(grep -o 'run .* passed: every checkout answered as expected' "$LOG_DIR/traffic.log" | tail -n 1)"
}

start_serving() {
    docker run -d --name "$SERVE_CT" --network "$NET" -p 127.0.0.1::8003 "$TAG" >/dev/null || {
        DETAIL="docker run -d failed"
        return 1
    }
    DETAIL="default command, detached"
}

becomes_healthy() {
    local interval timeout bound waited=0 health
    interval=$(docker image inspect -f '{{json .Config.Healthcheck.Interval}}' "$TAG")
    timeout=$(docker image inspect -f '{{json .Config.Healthcheck.Timeout}}' "$TAG")
    # the first probe runs one interval after the start (this engine has no start_interval)
    bound=$(((${interval:-30000000000} + ${timeout:-5000000000}) / 1000000000 + 20))
    while ((waited < bound)); do
        health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$SERVE_CT")
        [[ $health == healthy ]] && { DETAIL="healthy after ~${waited}s (bound ${bound}s)"; return 0; }
        [[ $(docker inspect -f '{{.State.Running}}' "$SERVE_CT") == true ]] || { DETAIL="the container exited"; return 1; }
        sleep 1
        waited=$((waited + 1))
    done
    DETAIL="still $health after ${bound}s: $(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$SERVE_CT" | tail -n 1)"
    return 1
}

runs_as_non_root() {
    local uid
    uid=$(docker exec "$SERVE_CT" id -u) || { DETAIL="docker exec id -u failed"; return 1; }
    DETAIL="uid $uid"
    [[ $uid != 0 ]]
}

answers_on_loopback() {
    local port code
    port=$(docker port "$SERVE_CT" 8003/tcp | awk -F: '/^127\.0\.0\.1:/ {print $2; exit}')
    [[ -n "$port" ]] || { DETAIL="8003 not published on 127.0.0.1"; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz" || true)
    DETAIL="GET 127.0.0.1:$port/readyz -> $code"
    [[ $code == 200 ]]
}

stops_cleanly() {
    local start end took status
    start=$(date +%s)
    docker stop -t "$STOP_GRACE_S" "$SERVE_CT" >/dev/null || { DETAIL="docker stop failed"; return 1; }
    end=$(date +%s)
    took=$((end - start))
    status=$(docker inspect -f '{{.State.ExitCode}}' "$SERVE_CT")
    docker logs "$SERVE_CT" >"$LOG_DIR/serve.log" 2>&1 || true
    DETAIL="exit $status after ${took}s (grace ${STOP_GRACE_S}s)"
    [[ $status == 0 && $took -lt $STOP_GRACE_S ]]
}

image_size() {
    local bytes base_bytes
    bytes=$(docker image inspect -f '{{.Size}}' "$TAG") || return 1
    base_bytes=$(docker image inspect -f '{{.Size}}' "$BASE")
    DETAIL=$(awk -v s="$bytes" -v b="$base_bytes" 'BEGIN {printf "%.0f MB (base %.0f MB, fakesvc layers %.0f MB)", s / 1e6, b / 1e6, (s - b) / 1e6}')
    printf '%s\n' "$DETAIL"
}

cached_rebuild() {
    local before after steps froms cached
    before=$(docker image inspect -f '{{.Id}}' "$TAG")
    build "$LOG_DIR/rebuild.log" || { DETAIL="rebuild failed: $LOG_DIR/rebuild.log"; return 1; }
    after=$(docker image inspect -f '{{.Id}}' "$TAG")
    # the legacy builder says "Using cache" for every step when nothing ran, but FROM and the ARGs before it
    steps=$(grep -Ec '^Step [0-9]+/[0-9]+ : ' "$LOG_DIR/rebuild.log" || true)
    froms=$(awk '/^Step [0-9]+\/[0-9]+ : FROM / {seen = 1; n++; next}
                 /^Step [0-9]+\/[0-9]+ : / && !seen {n++} END {print n + 0}' "$LOG_DIR/rebuild.log")
    cached=$(grep -c 'Using cache' "$LOG_DIR/rebuild.log" || true)
    DETAIL="$cached of $((steps - froms)) steps cached (+$froms FROM or global ARG), image id $([[ $before == "$after" ]] && echo unchanged || echo CHANGED)"
    [[ $steps -gt 0 && $cached -eq $((steps - froms)) && $before == "$after" ]]
}

# ---- the run -------------------------------------------------------------------------------------------
say "docker: $(docker version -f 'client {{.Client.Version}}, engine {{.Server.Version}}')"
if step "base image" choose_base && step "build" first_build; then
    docker network create "$NET" >/dev/null
    step "traffic run (20 checkouts)" traffic_run || true
    if step "serve detached" start_serving; then
        step "HEALTHCHECK healthy" becomes_healthy || true
        step "runs as non-root" runs_as_non_root || true
        step "/readyz on 127.0.0.1" answers_on_loopback || true
        step "docker stop, exit 0" stops_cleanly || true
    else
        for name in "HEALTHCHECK healthy" "runs as non-root" "/readyz on 127.0.0.1" "docker stop, exit 0"; do
            skip "$name" "not serving"
        done
    fi
    step "image size" image_size || true
    step "rebuild, all cached" cached_rebuild || true
else
    for name in "traffic run (20 checkouts)" "serve detached" "HEALTHCHECK healthy" "runs as non-root" \
        "/readyz on 127.0.0.1" "docker stop, exit 0" "image size" "rebuild, all cached"; do
        skip "$name" "no image"
    done
    FAILED=1
fi
table
exit "$FAILED"
