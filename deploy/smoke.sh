#!/usr/bin/env bash
# shellcheck disable=SC2317,SC2329  # the checks are called through step, which shellcheck cannot follow
# deploy/smoke.sh: build the image from the repository's Dockerfile and run it for real.
#
#   sudo deploy/smoke.sh            # or as a member of the docker group (the stand-in base needs root)
#
# Checks (docs/deploy.md has the table): the build; the default command with a short traffic run, also
# as the Kubernetes pods run it (read-only root, no capabilities); serving detached (HEALTHCHECK healthy,
# non-root, /readyz on a 127.0.0.1-published port, docker stop exit 0 within the grace); the sink and
# payment as their own containers and the tools' --help; compose.yaml on Compose (the traffic run's exit
# status, truth and report read back, fault control between containers with the admin token and 401
# without, every signal sent a row in the sink's volume, the analyser and the scorer in a container
# against the compose sink, down -v); compose.prodsentinel.yaml against a stand-in backend; what
# `python -m fakesvc.graph deploy` writes for the shop and for a graph file; that nothing left the
# networks; the image size; a rebuild with no change cached throughout. Prints one table (step, result,
# seconds, detail); exit 0 all held, 1 a step failed, 2 no Docker daemon.
#
# Compose is `docker compose` (v2) where the plugin is installed, else `docker-compose` (v1); SMOKE_COMPOSE
# names one. The base is the Dockerfile's PYTHON_IMAGE default (PYTHON_IMAGE=... in the environment
# overrides it). When it can be neither found locally nor pulled, a stand-in, fakesvc-python:3.11-bookworm,
# is built from Debian's packages (debootstrap, root) and kept for the next run (docker rmi it to rebuild).
# Everything else the script makes (containers, networks and their iptables guards, compose projects with
# their containers and volumes, its image tag, the dangling images of its builds, the debootstrap
# directory) is removed on exit, also when a step fails or it is interrupted. Containers reach only the
# networks it made and ports published on 127.0.0.1; every URL they are given names a container of this run.
set -euo pipefail
# Every long command runs under `timeout --foreground`: in the terminal's process group, so that Ctrl-C
# ends it at once and the cleanup runs (plain timeout puts its command in a group of its own).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STANDIN=fakesvc-python:3.11-bookworm
RUN_ID="fakesvc-smoke-$$"
TAG="fakesvc-smoke:$$"
NET="$RUN_ID"                     # the single containers' network
COMPOSE_NET="$RUN_ID-compose"     # the compose project's default network, made (and guarded) beforehand
BACKEND_NET="$RUN_ID-prodsentinel" # where a stand-in ProdSentinel backend answers, for the override
BACKEND_CT="$RUN_ID-backend"
TRAFFIC_CT="$RUN_ID-traffic"
SERVE_CT="$RUN_ID-serve"
SINK_CT="$RUN_ID-sink"
PAYMENT_CT="$RUN_ID-payment"
PROJECT="$RUN_ID"   # the compose project: its containers and volumes are named after it
COMPOSE=()          # docker compose (v2) or docker-compose (v1), whichever is installed
COMPOSE_BASE="$ROOT/compose.yaml"   # the compose file a project runs (a graph's, written by fakesvc.graph deploy)
COMPOSE_FILES=()    # overrides on top of it and the network override: -f compose.prodsentinel.yaml
PROJECTS_UP=()      # "PROJECT|COMPOSE_BASE" of each project brought up, to take down on exit
GUARDS=()           # "BRIDGE COMMENT" of each iptables rule this run inserted in DOCKER-USER
STOP_GRACE_S=10
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fakesvc-smoke.XXXXXX")
CHROOT=""
IMAGES_BEFORE=""

say() { printf 'smoke: %s\n' "$*" >&2; }

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    local project guard bridge comment
    for project in "${PROJECTS_UP[@]}"; do
        PROJECT=${project%%|*} COMPOSE_BASE=${project#*|} compose down -v --remove-orphans -t 5 \
            >>"$LOG_DIR/compose-down.log" 2>&1
    done
    docker rm -f -v "$TRAFFIC_CT" "$SERVE_CT" "$SINK_CT" "$PAYMENT_CT" "$BACKEND_CT" >/dev/null 2>&1
    docker network rm "$NET" "$COMPOSE_NET" "$BACKEND_NET" >/dev/null 2>&1
    for guard in "${GUARDS[@]}"; do
        read -r bridge comment <<<"$guard"
        iptables -D DOCKER-USER -i "$bridge" ! -o "$bridge" -m comment --comment "$comment" -j DROP 2>/dev/null
    done
    docker image rm "$TAG" >/dev/null 2>&1
    if [[ -n "$IMAGES_BEFORE" ]]; then   # dangling images (the build stage) that appeared during this run
        local id
        for id in $(docker images -q --no-trunc --filter dangling=true); do
            grep -qx "$id" <<<"$IMAGES_BEFORE" || docker image rm "$id" >/dev/null 2>&1
        done
    fi
    if [[ -n "$CHROOT" && -d "$CHROOT" ]]; then
        local mnt
        awk -v d="$CHROOT" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r mnt; do
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
  apt-get install docker.io docker-compose   # the engine, the client and Compose
  dockerd >/var/log/dockerd.log 2>&1 &      # or: systemctl start docker
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
    if timeout --foreground 120 docker pull "$wanted" >"$LOG_DIR/pull.log" 2>&1; then
        BASE=$wanted DETAIL="$BASE (pulled)"
        return 0
    fi
    say "$wanted cannot be pulled ($(tail -n 1 "$LOG_DIR/pull.log")); using a local stand-in from Debian's packages"
    build_standin || return 1
    BASE=$STANDIN DETAIL="$wanted not pullable; $DETAIL"
}

# graph_on_compose NAME GRAPH: python -m fakesvc.graph deploy --graph GRAPH (in the image; GRAPH a built-in
# name or a file on this machine, mounted for it), then the compose file it wrote: up, every service healthy,
# the traffic run, every signal delivered and stored, down -v.
graph_on_compose() {
    local name=$1 graph=$2 out="$LOG_DIR/graph-$1" mounts=() services=() callers=() service
    mkdir -p "$out"
    if [[ -f $graph ]]; then
        mounts=(-v "$(realpath "$graph"):/in/$(basename "$graph"):ro")
        graph="/in/$(basename "$graph")"
    fi
    docker run --rm --network none --user "$(id -u):$(id -g)" -v "$out:/out" "${mounts[@]}" "$TAG" \
        python -m fakesvc.graph deploy --graph "$graph" --out /out >"$out.log" 2>&1 ||
        { DETAIL="graph deploy failed: $(tail -n 1 "$out.log")"; return 1; }
    PROJECT="$RUN_ID-$name" COMPOSE_BASE="$out/compose.yaml" COMPOSE_FILES=() TRAFFIC_DURATION_S=10
    find_compose || return 1
    mapfile -t services < <(compose config --services | grep -vx traffic)
    for service in "${services[@]}"; do [[ $service == sink ]] || callers+=("$service"); done
    compose_up "${services[@]}" || return 1
    compose_traffic || return 1
    services_stop "${callers[@]}" || return 1
    sink_rows || return 1
    local stored=$DETAIL
    compose_down || return 1
    DETAIL="${#callers[@]} services and the sink healthy; traffic exit 0; $stored; down -v"
}

shop_on_compose() { graph_on_compose shop shop; }

# a graph file, as a user writes one: the checkout's own, copied under another name
file_graph_on_compose() {
    sed 's/^name: checkout$/name: my-checkout/' "$ROOT/fakesvc/graph/graphs/checkout.yaml" >"$LOG_DIR/my-checkout.yaml"
    graph_on_compose file "$LOG_DIR/my-checkout.yaml"
}

# ---- the networks: containers reach each other and 127.0.0.1-published ports, nothing else ----------------
# make_network NAME: a bridge network of this run; as root with iptables, guarded: a DOCKER-USER rule drops
# (and counts) every packet from its bridge to anywhere but that bridge, i.e. anything bound outside the
# machine or to another network. The host itself (the 127.0.0.1-published ports) is not forwarded traffic.
make_network() {
    local id bridge
    id=$(docker network create "$1") || return 1
    if [[ $(id -u) == 0 ]] && command -v iptables >/dev/null && iptables -n -L DOCKER-USER >/dev/null 2>&1; then
        bridge="br-${id:0:12}"
        iptables -I DOCKER-USER -i "$bridge" ! -o "$bridge" -m comment --comment "$1" -j DROP || return 1
        GUARDS+=("$bridge $1")
    fi
}

networks() {
    local name
    for name in "$NET" "$COMPOSE_NET" "$BACKEND_NET"; do
        make_network "$name" || { DETAIL="docker network create $name, or its iptables rule, failed"; return 1; }
    done
    # the compose project's default network is the one made here (Compose does not create it then)
    printf 'networks:\n  default:\n    name: %s\n    external: true\n' "$COMPOSE_NET" >"$LOG_DIR/network.yaml"
    if ((${#GUARDS[@]})); then
        DETAIL="$NET, $COMPOSE_NET, $BACKEND_NET; each guarded by a DOCKER-USER DROP rule"
    else
        DETAIL="$NET, $COMPOSE_NET, $BACKEND_NET; not guarded (needs root and iptables)"
    fi
}

nothing_left() {
    local guard bridge comment packets total=0 counts=()
    for guard in "${GUARDS[@]}"; do
        read -r bridge comment <<<"$guard"
        packets=$(iptables -n -v -x -L DOCKER-USER | awk -v c="/* $comment */" 'index($0, c) {print $1; exit}')
        total=$((total + ${packets:-0}))
        counts+=("$comment ${packets:-?}")
    done
    DETAIL="packets dropped on their way out: $total ($(IFS=,; echo "${counts[*]}"))"
    [[ $total == 0 ]]
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

PASSED="every checkout's outcome is explained"   # a traffic run's summary when every checkout held

# short_run LOG DOCKER_RUN_ARG...: the default command with a 20-checkout traffic run; exit 0 and its summary
short_run() {
    local log=$1 status=0
    shift
    timeout --foreground 180 docker run "$@" "$TAG" python /app/supervisor.py --rate 5 --count 20 \
        --latency-scale 0 --truth /data/truth.jsonl >"$log" 2>&1 || status=$?
    if [[ $status != 0 ]] || ! grep -q "$PASSED" "$log"; then
        DETAIL="exit $status: $(grep -m 1 -E 'Error|error:' "$log" || tail -n 1 "$log")"
        return 1
    fi
    DETAIL="exit 0: $(grep -o "run .* passed: $PASSED" "$log" | tail -n 1)"
}

traffic_run() { short_run "$LOG_DIR/traffic.log" --name "$TRAFFIC_CT" --network "$NET"; }

# The pods' securityContext (deploy/k8s/), as far as Docker can hold it: a read-only root filesystem, no
# capabilities, no privilege escalation, uid 10001, and /data a fresh volume of its own (their emptyDir or
# claim; an anonymous volume, removed with the container).
pod_constraints() {
    short_run "$LOG_DIR/read-only.log" --rm --network "$NET" --read-only --cap-drop ALL \
        --security-opt no-new-privileges --user 10001:10001 --volume /data
}

start_serving() {
    docker run -d --name "$SERVE_CT" --network "$NET" -p 127.0.0.1::8003 "$TAG" >/dev/null || {
        DETAIL="docker run -d failed"
        return 1
    }
    DETAIL="default command, detached"
}

# wait_healthy CONTAINER BOUND_S: until its HEALTHCHECK says healthy (DETAIL says how long, or why not).
wait_healthy() {
    local ct=$1 bound=$2 waited=0 health=none
    while ((waited < bound)); do
        health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$ct")
        [[ $health == healthy ]] && { DETAIL="healthy after ~${waited}s"; return 0; }
        [[ $(docker inspect -f '{{.State.Running}}' "$ct") == true ]] || { DETAIL="$ct exited"; return 1; }
        sleep 1
        waited=$((waited + 1))
    done
    DETAIL="$ct still $health after ${bound}s: $(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$ct" | tail -n 1)"
    return 1
}

becomes_healthy() {
    local interval timeout bound
    interval=$(docker image inspect -f '{{json .Config.Healthcheck.Interval}}' "$TAG")
    timeout=$(docker image inspect -f '{{json .Config.Healthcheck.Timeout}}' "$TAG")
    # the first probe runs one interval after the start (this engine has no start_interval)
    bound=$(((${interval:-30000000000} + ${timeout:-5000000000}) / 1000000000 + 20))
    wait_healthy "$SERVE_CT" "$bound" && DETAIL="$DETAIL (bound ${bound}s, the image's own timing)"
}

runs_as_non_root() {
    local uid
    uid=$(docker exec "$SERVE_CT" id -u) || { DETAIL="docker exec id -u failed"; return 1; }
    DETAIL="uid $uid"
    [[ $uid != 0 ]]
}

# published CONTAINER PORT: the host port that PORT of CONTAINER is published on at 127.0.0.1.
published() {
    docker port "$1" "$2/tcp" | awk -F: '/^127\.0\.0\.1:/ {print $2; exit}'
}

# http_status URL [CURL_ARGS...]: the status code (000 when nothing answered); the body in $LOG_DIR/body.
http_status() {
    local url=$1
    shift
    curl -s -o "$LOG_DIR/body" -w '%{http_code}' --max-time 10 "$@" "$url" || true
}

# answers CONTAINER PORT PATH: GET PATH on its 127.0.0.1-published PORT answers 200.
answers() {
    local port code
    port=$(published "$1" "$2")
    [[ -n "$port" ]] || { DETAIL="$2 of $1 not published on 127.0.0.1"; return 1; }
    code=$(http_status "http://127.0.0.1:$port$3")
    DETAIL="GET 127.0.0.1:$port$3 -> $code"
    [[ $code == 200 ]]
}

answers_on_loopback() { answers "$SERVE_CT" 8003 /readyz; }

# stops_in_grace CONTAINER: docker stop ends it with exit 0 before the grace; its log kept.
stops_in_grace() {
    local ct=$1 start took status
    start=$(date +%s)
    docker stop -t "$STOP_GRACE_S" "$ct" >/dev/null || { DETAIL="docker stop $ct failed"; return 1; }
    took=$(($(date +%s) - start))
    status=$(docker inspect -f '{{.State.ExitCode}}' "$ct")
    docker logs "$ct" >"$LOG_DIR/$ct.log" 2>&1 || true
    DETAIL="exit $status after ${took}s (grace ${STOP_GRACE_S}s)"
    [[ $status == 0 && $took -lt $STOP_GRACE_S ]]
}

stops_cleanly() { stops_in_grace "$SERVE_CT"; }

# ---- each entry point as its own container ---------------------------------------------------------------
# run_alone CONTAINER PORT ARGS...: the image running ARGS, detached on the smoke network, PORT published
# on 127.0.0.1; its own HEALTHCHECK command, probed every second rather than every interval.
run_alone() {
    local ct=$1 port=$2
    shift 2
    docker run -d --name "$ct" --network "$NET" -p "127.0.0.1::$port" \
        --health-interval 1s --health-start-period 60s "$@" >/dev/null || { DETAIL="docker run $ct failed"; return 1; }
}

# serves_alone CONTAINER PORT PATH: healthy by its HEALTHCHECK within 30 s and PATH answers 200.
serves_alone() {
    local healthy
    wait_healthy "$1" 30 || return 1
    healthy=$DETAIL
    answers "$1" "$2" "$3" || return 1
    DETAIL="$healthy, $DETAIL"
}

sink_alone() {
    run_alone "$SINK_CT" 8000 "$TAG" python -m fakesvc.sink && serves_alone "$SINK_CT" 8000 /ingest/health
}

# telemetry_line LOG: the shutdown summary of a process that sent telemetry ("queued N, sent N, ...").
telemetry_line() {
    grep -o 'telemetry to [^ ]*: queued [0-9]*.*' "$1" | tail -n 1
}

# count_of FIELD LINE: the number after FIELD in a summary line ("sent 12" -> 12).
count_of() {
    sed -n "s/.*[ ,]$1 \([0-9][0-9]*\).*/\1/p" <<<"$2"
}

payment_alone() {
    local served summary
    run_alone "$PAYMENT_CT" 8004 -e "PRODSENTINEL_URL=http://$SINK_CT:8000" "$TAG" python -m fakesvc.payment &&
        serves_alone "$PAYMENT_CT" 8004 /readyz || return 1
    served=$DETAIL
    # one business request, so that there is telemetry to deliver (inventory is absent: payment answers 5xx)
    http_status "http://127.0.0.1:$(published "$PAYMENT_CT" 8004)/pay/order-smoke-1" -X POST >/dev/null
    stops_in_grace "$PAYMENT_CT" || return 1
    summary=$(telemetry_line "$LOG_DIR/$PAYMENT_CT.log")
    DETAIL="$served, $DETAIL; ${summary:-no telemetry summary}"
    [[ -n "$summary" && $(count_of sent "$summary") -gt 0 && $(count_of sent "$summary") == "$(count_of queued "$summary")" ]]
}

# accepted_by CONTAINER: how many signals the sink in CONTAINER accepted (its /stats on its published 8000)
accepted_by() {
    [[ $(http_status "http://127.0.0.1:$(published "$1" 8000)/stats") == 200 ]] &&
        python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["accepted_total"])' "$LOG_DIR/body"
}

sink_stops() {
    local accepted
    accepted=$(accepted_by "$SINK_CT") || { DETAIL="GET /stats failed"; return 1; }
    stops_in_grace "$SINK_CT" && DETAIL="accepted $accepted signals from the payment container; $DETAIL"
}

# usage_of MODULE: `python -m MODULE --help` in a container with no network exits 0 with its usage.
usage_of() {
    local out status=0
    out=$(docker run --rm --network none "$TAG" python -m "$1" --help 2>&1) || status=$?
    [[ $status == 0 && $out == "usage: python -m $1"* ]] || { DETAIL="$1 --help: exit $status: ${out:0:120}"; return 1; }
}

tools_help() {
    local module
    for module in fakesvc.traffic fakesvc.score fakesvc.analyse fakesvc.truth fakesvc.graph; do
        usage_of "$module" || return 1
    done
    DETAIL="traffic, score, analyse, truth, graph: exit 0 with their usage"
}

# ---- compose.yaml, brought up for real ------------------------------------------------------------------
TRAFFIC_DURATION_S=20
ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PORT_ENV=()             # VAR=PORT: a free 127.0.0.1 port for every ${..._PORT:-N} the compose file publishes on
declare -A HOST_PORT=() # compose service -> the host port it is published on, once up

find_compose() {
    if [[ -n ${SMOKE_COMPOSE:-} ]]; then   # e.g. SMOKE_COMPOSE=docker-compose where both are installed
        read -r -a COMPOSE <<<"$SMOKE_COMPOSE"
    elif docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        DETAIL="neither docker compose nor docker-compose (apt-get install docker-compose)"
        return 1
    fi
}

# compose ARGS...: Compose on $COMPOSE_BASE as the project of this run, with this run's image, token and
# host ports (free ones, so that a fakesvc already running here is not in the way); bounded by 5 minutes.
compose() {
    timeout --foreground 300 env FAKESVC_IMAGE="$TAG" FAKESVC_ADMIN_TOKEN="$ADMIN_TOKEN" FAKESVC_SEED=7 \
        TRAFFIC_RATE=5 TRAFFIC_DURATION="$TRAFFIC_DURATION_S" PRODSENTINEL_NETWORK="$BACKEND_NET" "${PORT_ENV[@]}" \
        "${COMPOSE[@]}" --project-name "$PROJECT" -f "$COMPOSE_BASE" -f "$LOG_DIR/network.yaml" "${COMPOSE_FILES[@]}" "$@"
}

# assign_ports: a free port for each ${VAR_PORT:-N} of the compose files (PORT_ENV)
assign_ports() {
    local vars ports i
    mapfile -t vars < <(grep -ho '[$]{[A-Z0-9_]*_PORT:-' "$COMPOSE_BASE" | sed 's/^[$]{//; s/:-$//' | sort -u)
    read -r -a ports <<<"$(free_ports ${#vars[@]})"
    PORT_ENV=()
    for i in "${!vars[@]}"; do PORT_ENV+=("${vars[$i]}=${ports[$i]}"); done
}

# the container of a compose service of this run (Compose v1 and v2 label them alike)
container_of() {
    docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}

free_ports() {  # free_ports N: N ports free on 127.0.0.1 now
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# compose_up SERVICE...: up, and each SERVICE healthy (HOST_PORT says where each is published)
compose_up() {
    local name ct
    find_compose || return 1
    assign_ports
    PROJECTS_UP+=("$PROJECT|$COMPOSE_BASE")
    # up waits for the three services to turn healthy before it starts the traffic run (depends_on)
    compose up --detach --no-build >"$LOG_DIR/$PROJECT-up.log" 2>&1 ||
        { DETAIL="compose up failed: $(grep -m 1 -E 'ERROR|unhealthy|rror' "$LOG_DIR/$PROJECT-up.log" || tail -n 1 "$LOG_DIR/$PROJECT-up.log")"; return 1; }
    for name in "$@"; do
        ct=$(container_of "$name")
        [[ -n $ct ]] || { DETAIL="no container for $name"; return 1; }
        wait_healthy "$ct" 60 || { DETAIL="$name: $DETAIL"; return 1; }
        HOST_PORT[$name]=$(docker port "$ct" | awk -F: '/127\.0\.0\.1:/ {print $NF; exit}')
    done
    DETAIL="Compose $("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n 1): $* healthy"
}

compose_traffic() {
    local ct status
    ct=$(container_of traffic)
    [[ -n $ct ]] || { DETAIL="no traffic container"; return 1; }
    status=$(timeout --foreground $((TRAFFIC_DURATION_S + 120)) docker wait "$ct") || { DETAIL="still running"; return 1; }
    docker logs "$ct" >"$LOG_DIR/$PROJECT-traffic.log" 2>&1
    DETAIL="exit $status: $(tail -n 1 "$LOG_DIR/$PROJECT-traffic.log")"
    [[ $status == 0 ]] && grep -q "$PASSED" "$LOG_DIR/$PROJECT-traffic.log"
}

# in_volume VOLUME PYTHON ARGS...: run PYTHON on the volume (mounted at /data) in a container with no network
in_volume() {
    local volume=$1 code=$2
    shift 2
    docker run --rm --network none -v "${PROJECT}_$volume:/data" "$TAG" python -c "$code" "$@"
}

# the truth and the report, read out of their volume as docs/deploy.md says: compose run ... cat
results_in_volume() {
    local file out
    for file in truth.jsonl report.json; do
        compose run --rm --no-deps -T traffic cat "/data/$file" >"$LOG_DIR/$file" 2>>"$LOG_DIR/results.log" ||
            { DETAIL="compose run traffic cat /data/$file failed: $(tail -n 1 "$LOG_DIR/results.log")"; return 1; }
    done
    out=$(python3 - "$LOG_DIR/truth.jsonl" "$LOG_DIR/report.json" <<'EOF'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
report = json.load(open(sys.argv[2]))
faulty = sum(1 for line in lines if line.get("root_cause_service"))
unexplained = report["causes"]["harness"] + report["causes"]["incomplete"]
ok = len(lines) == report["sent"] == report["completed"] > 0 and unexplained == 0
ok = ok and all(line.get("cause") in ("healthy", "fault") for line in lines)
print("ok" if ok else "MISMATCH", "truth {} lines ({} faulty); report: sent {sent}, completed {completed}, unexplained {}".format(
    len(lines), faulty, unexplained, **report))
EOF
    ) || { DETAIL="the truth or the report is not what the traffic run writes"; return 1; }
    DETAIL=${out#* }
    [[ $out == ok* ]]
}

# chaos_put TOKEN BODY: PUT BODY to the gateway's /chaos/services from the host (its 127.0.0.1 port)
chaos_put() {
    local auth=()
    [[ -z $1 ]] || auth=(-H "Authorization: Bearer $1")
    http_status "http://127.0.0.1:${HOST_PORT[gateway]}/chaos/services" -X PUT "${auth[@]}" \
        -H 'Content-Type: application/json' --data "$2"
}

# rules_of SERVICE PORT: how many rules the service itself reports (its own /chaos on its own port)
rules_of() {
    http_status "http://127.0.0.1:$2/chaos" >/dev/null
    python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["rules"]))' "$LOG_DIR/body"
}

fault_control_with_token() {
    local code
    code=$(chaos_put "$ADMIN_TOKEN" '{"inventory-service": [{"kind": "latency", "latency_ms": [200, 900]}],
        "payment-service": [{"kind": "error", "probability": 0.5}]}')
    [[ $code == 200 ]] || { DETAIL="PUT /chaos/services with the token -> $code: $(head -c 200 "$LOG_DIR/body")"; return 1; }
    DETAIL="PUT gateway /chaos/services -> 200; inventory reports $(rules_of inventory "${HOST_PORT[inventory]}") rule(s), payment $(rules_of payment "${HOST_PORT[payment]}")"
    [[ $(rules_of inventory "${HOST_PORT[inventory]}") == 1 && $(rules_of payment "${HOST_PORT[payment]}") == 1 ]] || return 1
    code=$(chaos_put "$ADMIN_TOKEN" '{"inventory-service": [], "payment-service": []}')
    [[ $code == 200 && $(rules_of inventory "${HOST_PORT[inventory]}") == 0 ]] || { DETAIL="$DETAIL; clearing -> $code"; return 1; }
    DETAIL="$DETAIL; cleared -> 200"
}

fault_control_refused() {
    local none wrong direct body='{"inventory-service": [{"kind": "latency", "latency_ms": [200, 900]}]}'
    none=$(chaos_put "" "$body")
    wrong=$(chaos_put "not-$ADMIN_TOKEN" "$body")
    # straight to the inventory container, without the gateway
    direct=$(http_status "http://127.0.0.1:${HOST_PORT[inventory]}/chaos" -X PUT -H 'Content-Type: application/json' \
        --data '{"rules": [{"kind": "latency", "latency_ms": [200, 900]}]}')
    DETAIL="no token -> $none, a wrong one -> $wrong, inventory direct -> $direct; inventory has $(rules_of inventory "${HOST_PORT[inventory]}") rule(s)"
    [[ $none == 401 && $wrong == 401 && $direct == 401 && $(rules_of inventory "${HOST_PORT[inventory]}") == 0 ]]
}

SENT_TOTAL=0
# services_stop SERVICE...: compose stop them; each exits 0 having delivered every signal it queued
services_stop() {
    local name ct status summary sent summaries=()
    SENT_TOTAL=0
    compose stop -t "$STOP_GRACE_S" "$@" >>"$LOG_DIR/$PROJECT-stop.log" 2>&1 || { DETAIL="compose stop failed"; return 1; }
    for name in "$@"; do
        ct=$(container_of "$name")
        status=$(docker inspect -f '{{.State.ExitCode}}' "$ct")
        docker logs "$ct" >"$LOG_DIR/$PROJECT-$name.log" 2>&1
        summary=$(telemetry_line "$LOG_DIR/$PROJECT-$name.log")
        sent=$(count_of sent "$summary")
        [[ $status == 0 && -n $sent ]] || { DETAIL="$name: exit $status, ${summary:-no telemetry summary}"; return 1; }
        [[ $sent == "$(count_of queued "$summary")" && $(count_of dead-lettered "$summary") == 0 ]] ||
            { DETAIL="$name: not all delivered: $summary"; return 1; }
        SENT_TOTAL=$((SENT_TOTAL + sent))
        summaries+=("$name $sent")
    done
    DETAIL="exit 0 each; sent (= queued): $(IFS=,; echo "${summaries[*]}")"
}

analysed_in_container() {
    local status=0 out
    out=$(compose run --rm --no-deps -T traffic sh -c 'python -m fakesvc.analyse --truth /data/truth.jsonl \
        --from http://sink:8000 | python -m fakesvc.score --truth /data/truth.jsonl --predictions - --out /data/score.json \
        >/dev/null && python -c "import json; s = json.load(open(\"/data/score.json\")); \
print(s[\"faulty\"], s[\"ac@1\"], s[\"detection_precision\"], s[\"detection_recall\"])"' 2>"$LOG_DIR/analyse.log") || status=$?
    [[ $status == 0 ]] || { DETAIL="exit $status: $(tail -n 1 "$LOG_DIR/analyse.log")"; return 1; }
    read -r faulty ac1 precision recall <<<"$out"
    DETAIL="$faulty faulty checkouts: AC@1 $ac1, detection precision $precision, recall $recall"
    [[ $faulty -gt 0 && $ac1 == 1.0 ]]
}

sink_rows() {
    local rows
    compose stop -t "$STOP_GRACE_S" sink >>"$LOG_DIR/$PROJECT-stop.log" 2>&1 || { DETAIL="compose stop sink failed"; return 1; }
    rows=$(in_volume sink-data 'import sqlite3; print(sqlite3.connect("/data/signals.db").execute("SELECT count(*) FROM raw_signals").fetchone()[0])') ||
        { DETAIL="reading the sink volume failed"; return 1; }
    DETAIL="$rows rows in sink-data, the services sent $SENT_TOTAL"
    [[ $rows == "$SENT_TOTAL" && $rows -gt 0 ]]
}

compose_down() {
    local left kept=() project
    compose down -v --remove-orphans -t 5 >>"$LOG_DIR/compose-down.log" 2>&1 || { DETAIL="compose down failed"; return 1; }
    for project in "${PROJECTS_UP[@]}"; do [[ ${project%%|*} == "$PROJECT" ]] || kept+=("$project"); done
    PROJECTS_UP=("${kept[@]}")
    left=$( (docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT"
        docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT") | wc -l)
    DETAIL="$left containers or volumes of the project left"
    [[ $left == 0 ]]
}

# compose.prodsentinel.yaml on top: a stand-in backend (the embedded sink: the same ingestion API) answers as
# `backend` on the network PRODSENTINEL_NETWORK names; the embedded sink must not start, every signal the
# services send must reach the backend.
prodsentinel_override() {
    local accepted
    docker run -d --name "$BACKEND_CT" --network "$BACKEND_NET" --network-alias backend -p 127.0.0.1::8000 \
        --health-interval 1s "$TAG" python -m fakesvc.sink >/dev/null || { DETAIL="docker run backend failed"; return 1; }
    wait_healthy "$BACKEND_CT" 30 || { DETAIL="backend: $DETAIL"; return 1; }
    PROJECT="$RUN_ID-ps" COMPOSE_FILES=(-f "$ROOT/compose.prodsentinel.yaml") TRAFFIC_DURATION_S=5
    compose_up inventory payment gateway || return 1
    [[ -z $(container_of sink) ]] || { DETAIL="the embedded sink started"; return 1; }
    compose_traffic || return 1
    services_stop gateway payment inventory || return 1
    accepted=$(accepted_by "$BACKEND_CT") || { DETAIL="GET /stats of the backend failed"; return 1; }
    compose_down || return 1
    DETAIL="no embedded sink; traffic exit 0; the services sent $SENT_TOTAL, the backend accepted $accepted; down -v"
    [[ $accepted == "$SENT_TOTAL" && $accepted -gt 0 ]]
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
ALL_STEPS=("networks" "traffic run (20 checkouts)" "read-only root, no caps" "serve detached"
    "HEALTHCHECK healthy" "runs as non-root" "/readyz on 127.0.0.1" "docker stop, exit 0" "sink alone"
    "payment alone" "sink stops, exit 0" "tools' --help" "compose up" "compose traffic run"
    "truth, report in volume" "faults with token" "faults without token" "services stop, exit 0"
    "analyse + score" "sink rows = sent" "compose down -v" "with compose.prodsentinel" "shop graph on compose"
    "graph file on compose" "nothing left the networks" "image size" "rebuild, all cached")
# skip_all REASON NAME...: the steps that could not run, and why
skip_all() {
    local reason=$1 name
    shift
    for name in "$@"; do skip "$name" "$reason"; done
}

say "docker: $(docker version -f 'client {{.Client.Version}}, engine {{.Server.Version}}')"
if step "base image" choose_base && step "build" first_build; then
    if ! step "networks" networks; then
        table
        exit 1
    fi
    step "traffic run (20 checkouts)" traffic_run || true
    step "read-only root, no caps" pod_constraints || true
    if step "serve detached" start_serving; then
        step "HEALTHCHECK healthy" becomes_healthy || true
        step "runs as non-root" runs_as_non_root || true
        step "/readyz on 127.0.0.1" answers_on_loopback || true
        step "docker stop, exit 0" stops_cleanly || true
    else
        skip_all "not serving" "HEALTHCHECK healthy" "runs as non-root" "/readyz on 127.0.0.1" "docker stop, exit 0"
    fi
    if step "sink alone" sink_alone; then
        step "payment alone" payment_alone || true
        step "sink stops, exit 0" sink_stops || true
    else
        skip_all "no sink" "payment alone" "sink stops, exit 0"
    fi
    step "tools' --help" tools_help || true
    if step "compose up" compose_up sink inventory payment gateway; then
        if step "compose traffic run" compose_traffic; then
            step "truth, report in volume" results_in_volume || true
        else
            skip "truth, report in volume" "no traffic run"
        fi
        step "faults with token" fault_control_with_token || true
        step "faults without token" fault_control_refused || true
        if step "services stop, exit 0" services_stop gateway payment inventory; then
            step "analyse + score" analysed_in_container || true
            step "sink rows = sent" sink_rows || true
        else
            skip_all "services did not stop cleanly" "analyse + score" "sink rows = sent"
        fi
    else
        skip_all "compose did not come up" "compose traffic run" "truth, report in volume" "faults with token" \
            "faults without token" "services stop, exit 0" "analyse + score" "sink rows = sent"
    fi
    if ((${#PROJECTS_UP[@]})); then step "compose down -v" compose_down || true; else skip "compose down -v" "not up"; fi
    step "with compose.prodsentinel" prodsentinel_override || true
    step "shop graph on compose" shop_on_compose || true
    step "graph file on compose" file_graph_on_compose || true
    if ((${#GUARDS[@]})); then
        step "nothing left the networks" nothing_left || true
    else
        skip "nothing left the networks" "not guarded (needs root and iptables)"
    fi
    step "image size" image_size || true
    step "rebuild, all cached" cached_rebuild || true
else
    skip_all "no image" "${ALL_STEPS[@]}"
    FAILED=1
fi
table
exit "$FAILED"
