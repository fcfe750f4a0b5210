# Two network namespaces joined by a veth pair, made and removed by the test itself, so two
# vmon processes talk over a network link instead of loopback (sourced by the tests that
# migrate). Needs root and iproute2; without them netns_pair fails and the caller says why.
#
# netns_pair: creates NS_A (address ADDR_A) and NS_B (ADDR_B, its end of the pair VETH_B),
# each with its end of the pair and its loopback up; 0, or 1 with NETNS_WHY set.
# netns_pair_or_loopback: the same, and where it fails, NS_A and NS_B empty and both addresses
# 127.0.0.1 (the reason on stderr); LINK says which, for the checks' descriptions.
# netns_remove: deletes both namespaces (and so the pair).
# start_in NS NAME ARGS...: lib.sh's start, with vmon in NS (in this namespace when NS is empty).
NS_A=vmon-mig-a-$$
NS_B=vmon-mig-b-$$
ADDR_A=10.231.0.1
ADDR_B=10.231.0.2
VETH_B=vmb$$
NETNS_WHY=""

netns_pair() {
	if [ "$(id -u)" -ne 0 ]; then
		NETNS_WHY="network namespaces need root"
		return 1
	fi
	if ! command -v ip >/dev/null; then
		NETNS_WHY="ip (iproute2) is not installed"
		return 1
	fi
	local a=vma$$ b=$VETH_B log
	if ! log=$({ ip netns add "$NS_A" && ip netns add "$NS_B" &&
		ip link add "$a" type veth peer name "$b" &&
		ip link set "$a" netns "$NS_A" && ip link set "$b" netns "$NS_B" &&
		ip -n "$NS_A" addr add "$ADDR_A/24" dev "$a" && ip -n "$NS_B" addr add "$ADDR_B/24" dev "$b" &&
		ip -n "$NS_A" link set "$a" up && ip -n "$NS_B" link set "$b" up &&
		ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up; } 2>&1); then
		NETNS_WHY="cannot make two network namespaces joined by a veth pair: $(echo "$log" | tail -1)"
		netns_remove
		return 1
	fi
}

netns_pair_or_loopback() {
	if netns_pair; then
		LINK="over a veth pair between two network namespaces"
		return
	fi
	echo "$NETNS_WHY: the guests move over loopback" >&2
	NS_A="" NS_B="" ADDR_A=127.0.0.1 ADDR_B=127.0.0.1
	LINK="over loopback ($NETNS_WHY)"
}

netns_remove() {
	[ -n "$NS_A" ] && ip netns del "$NS_A" 2>/dev/null
	[ -n "$NS_B" ] && ip netns del "$NS_B" 2>/dev/null
	ip link del vma$$ 2>/dev/null
	return 0
}

start_in() {
	local ns=$1 name=$2
	shift 2
	if [ -z "$ns" ]; then
		start "$name" "$@"
		return
	fi
	OUT=$TEST_TMP/$name.out
	ERR=$TEST_TMP/$name.err
	# ip netns exec execs the command in place: $! is vmon's PID.
	ip netns exec "$ns" "$VMON" "$@" </dev/null >"$OUT" 2>"$ERR" &
	PID=$!
	PIDS+=("$PID")
}
