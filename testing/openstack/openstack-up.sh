#!/bin/bash
# openstack-up.sh - minimal, real OpenStack compute API on 127.0.0.1 from Debian 12 packages
# (Keystone 22 / Glance 25 / Placement 8 / Nova 26 "Zed" with the nova fake virt driver /
# Neutron 21 ML2 flat+vlan with the agentless mechanism driver in osmini_ml2.py).
#
#   * idempotent: re-running installs only what is missing, starts only what is not running
#   * no systemd needed: every daemon is started here with setsid (own process group),
#     its PID recorded in /run/osmini/<name>.pid; stop them with openstack-down.sh
#   * everything listens on 127.0.0.1 only (MariaDB: unix socket only, no TCP)
#
# Env knobs:
#   OSMINI_PASSWORD=secret        password of every account (admin, demo, service users, DB, rabbit)
#   OSMINI_DB=mariadb|sqlite      database backend (default mariadb; sqlite works but can throw
#                                 occasional "database is locked" errors under concurrency)
#   OSMINI_FAKE_SNAPSHOT=1|0      1 (default): compute driver = osmini_fake.OsminiFakeDriver, a
#                                 fake.FakeDriver subclass whose snapshot() uploads 64 KiB of zeros
#                                 (createImage images become 'active') and which re-adopts its
#                                 servers when nova-compute restarts; 0: stock fake.FakeDriver
#                                 (snapshot images stay 'queued', restarts forget servers)
#   OSMINI_SKIP_INSTALL=1         never call apt-get
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "openstack-up.sh: run as root" >&2; exit 1; }
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # no pyenv/venv shims
export LC_ALL=C.UTF-8
unset OS_CLOUD OS_AUTH_URL OS_TOKEN OS_AUTH_TYPE || true

PW=${OSMINI_PASSWORD:-secret}
DB=${OSMINI_DB:-mariadb}
FAKE_SNAPSHOT=${OSMINI_FAKE_SNAPSHOT:-1}
RUN=/run/osmini                 # pid files + mariadb socket
STATE=/var/lib/osmini           # mariadb datadir, marker files
LOGD=/var/log/osmini            # stdout/stderr of every daemon
CONF=/etc/osmini                # adminrc / demorc
PY=/usr/bin/python3
T0=$(date +%s)
log() { echo "[osmini +$(( $(date +%s) - T0 ))s] $*"; }
die() { echo "[osmini] ERROR: $*" >&2; exit 1; }
case "$DB" in mariadb|sqlite) ;; *) die "OSMINI_DB must be mariadb or sqlite";; esac

# --------------------------------------------------------------------------- packages
PKGS="keystone glance-api placement-api nova-api nova-conductor nova-scheduler nova-common
      python3-openstackclient python3-keystoneclient rabbitmq-server uwsgi-plugin-python3
      neutron-server sqlite3 curl util-linux"
[ "$DB" = mariadb ] && PKGS="$PKGS mariadb-server python3-pymysql"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "${OSMINI_SKIP_INSTALL:-0}" = 1 ] && die "missing packages:$missing"
  log "installing:$missing"
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then   # keep postinst scripts from starting daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing > /tmp/osmini-apt.log 2>&1 \
    || { [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -30 /tmp/osmini-apt.log; die "apt-get install failed"; }
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
fi
# on a systemd host the packages enable their own units (on 0.0.0.0, stock configs): turn them off
if [ -d /run/systemd/system ]; then
  systemctl disable --now keystone glance-api placement-api nova-api nova-conductor nova-scheduler neutron-server \
    rabbitmq-server >/dev/null 2>&1 || true
fi

mkdir -p "$RUN" "$STATE" "$LOGD" "$CONF"
chmod 755 "$RUN" "$STATE" "$LOGD"

# --------------------------------------------------------------------------- helpers
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
# start NAME USER CHDIR CMD...  -> own session/process group, pid file, output in $LOGD/NAME.out
start() {
  local name=$1 user=$2 dir=$3; shift 3
  if alive "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  ( cd "$dir" && exec nohup setsid setpriv --reuid "$user" --regid "$(id -g "$user")" --init-groups "$@" \
      >> "$LOGD/$name.out" 2>&1 < /dev/null ) &
  echo $! > "$RUN/$name.pid"
  log "started $name (pid $!)"
}
port_busy() { ss -Hltn "sport = :$1" | grep -q .; }
check_port() { # NAME PORT: refuse to start if a foreign process already listens there
  alive "$1" && return 0
  port_busy "$2" && die "port $2 (for $1) is already in use by a process not started by this script"
  return 0
}
wait_http() { # URL [seconds]
  local i; for i in $(seq 1 $(( ${2:-60} * 2 ))); do
    curl -s -o /dev/null --max-time 2 "$1" && return 0; sleep 0.5; done
  die "timeout waiting for $1"
}
# ini writer: files are regenerated every run (originals kept as *.dpkg-orig)
keep_orig() { [ -f "$1" ] && [ ! -f "$1.dpkg-orig" ] && cp -p "$1" "$1.dpkg-orig"; return 0; }
UWSGI_COMMON=(--plugins python3 --master --processes 2 --threads 1 --lazy-apps --die-on-term
              --need-app --buffer-size 65535 --add-header "Connection: close")
# NB: --threads 1 and "Connection: close" matter: with threads>1 SQLite connections get used across
# threads, and without Connection: close python-requests reuses sockets that uwsgi --http-socket has
# already closed (RemoteDisconnected / "Keystone service is temporarily unavailable" 503s).

authtoken() { # section body for keystonemiddleware / keystoneauth
cat <<EOF
www_authenticate_uri = http://127.0.0.1:5000
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PW
region_name = RegionOne
EOF
}

# --------------------------------------------------------------------------- database
declare -A DBURL
if [ "$DB" = mariadb ]; then
  MYSQL_DIR=$STATE/mysql SOCK=$RUN/mysql/mysqld.sock
  install -d -o mysql -g mysql "$RUN/mysql"
  if [ ! -d "$MYSQL_DIR/mysql" ]; then
    install -d -o mysql -g mysql "$MYSQL_DIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MYSQL_DIR" --auth-root-authentication-method=socket \
      --skip-test-db > "$LOGD/mariadb-install.out" 2>&1 || { cat "$LOGD/mariadb-install.out"; die "mariadb-install-db failed"; }
  fi
  start mariadb mysql "$MYSQL_DIR" /usr/sbin/mariadbd --no-defaults --datadir="$MYSQL_DIR" --socket="$SOCK" \
    --pid-file="$RUN/mysql/mariadbd.pid" --skip-networking --log-error="$LOGD/mariadb.err" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --max-connections=1000 \
    --innodb-buffer-pool-size=128M --skip-log-bin
  for i in $(seq 1 60); do [ -S "$SOCK" ] && mariadb --socket="$SOCK" -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb --socket="$SOCK" -uroot -e 'select 1' >/dev/null || die "mariadb did not come up (see $LOGD/mariadb.err)"
  sql=""
  for d in keystone glance placement nova_api nova nova_cell0 neutron; do sql="$sql CREATE DATABASE IF NOT EXISTS $d;"; done
  for u in keystone glance placement nova neutron; do
    sql="$sql CREATE USER IF NOT EXISTS '$u'@'localhost' IDENTIFIED BY '$PW'; ALTER USER '$u'@'localhost' IDENTIFIED BY '$PW';"
  done
  sql="$sql GRANT ALL ON keystone.* TO 'keystone'@'localhost'; GRANT ALL ON glance.* TO 'glance'@'localhost';
       GRANT ALL ON placement.* TO 'placement'@'localhost'; GRANT ALL ON nova_api.* TO 'nova'@'localhost';
       GRANT ALL ON nova.* TO 'nova'@'localhost'; GRANT ALL ON nova_cell0.* TO 'nova'@'localhost';
       GRANT ALL ON neutron.* TO 'neutron'@'localhost'; FLUSH PRIVILEGES;"
  mariadb --socket="$SOCK" -uroot -e "$sql"
  for d in keystone glance placement nova_api nova nova_cell0 neutron; do
    u=$d; case $d in nova*) u=nova;; esac
    DBURL[$d]="mysql+pymysql://$u:$PW@localhost/$d?unix_socket=$SOCK&charset=utf8"
  done
  log "mariadb ready (socket $SOCK)"
else
  DBURL[keystone]=sqlite:////var/lib/keystone/keystone.sqlite
  DBURL[glance]=sqlite:////var/lib/glance/glance.sqlite
  DBURL[placement]=sqlite:////var/lib/placement/placement.sqlite
  DBURL[nova_api]=sqlite:////var/lib/nova/nova_api.sqlite
  DBURL[nova]=sqlite:////var/lib/nova/nova.sqlite
  DBURL[nova_cell0]=sqlite:////var/lib/nova/nova_cell0.sqlite
  DBURL[neutron]=sqlite:////var/lib/neutron/neutron.sqlite
fi
wal() { [ "$DB" = sqlite ] && for f in "$@"; do sqlite3 "$f" 'PRAGMA journal_mode=WAL;' >/dev/null; done; return 0; }
# WAL is essential for SQLite here: without it keystone's 2 uwsgi workers deadlock into
# "database is locked" 500s within a few requests.

# --------------------------------------------------------------------------- rabbitmq
check_port epmd 4369; check_port rabbitmq 5672
cat > /etc/rabbitmq/rabbitmq-env.conf <<'EOF'
# written by openstack-up.sh: loopback only
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
DIST_PORT=25672
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
cat > /etc/rabbitmq/rabbitmq.conf <<'EOF'
listeners.tcp.default = 127.0.0.1:5672
loopback_users.guest = true
EOF
RENV=(env HOME=/var/lib/rabbitmq ERL_EPMD_ADDRESS=127.0.0.1)
start epmd rabbitmq /var/lib/rabbitmq "${RENV[@]}" /usr/bin/epmd -address 127.0.0.1
start rabbitmq rabbitmq /var/lib/rabbitmq "${RENV[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
rctl() { setpriv --reuid rabbitmq --regid "$(id -g rabbitmq)" --init-groups "${RENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@"; }
for i in $(seq 1 60); do rctl await_startup >/dev/null 2>&1 && break; sleep 1; done
rctl await_startup >/dev/null 2>&1 || die "rabbitmq did not start (see $LOGD/rabbitmq.out, /var/log/rabbitmq)"
rctl list_users 2>/dev/null | grep -q '^openstack\b' || rctl add_user openstack "$PW" >/dev/null
rctl change_password openstack "$PW" >/dev/null
rctl set_permissions openstack '.*' '.*' '.*' >/dev/null
log "rabbitmq ready"

# --------------------------------------------------------------------------- keystone
check_port keystone 5000
keep_orig /etc/keystone/keystone.conf
cat > /etc/keystone/keystone.conf <<EOF
[DEFAULT]
log_dir = /var/log/keystone
log_file = keystone.log
[database]
connection = ${DBURL[keystone]}
[token]
provider = fernet
[identity]
# lab speed: bcrypt cost 4 instead of 12 (every CloudStack action is a fresh process that logs in)
password_hash_rounds = 4
[cache]
# in-process cache: token validations and catalogs of fresh tokens (every CloudStack action logs in)
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
policy_dirs = /etc/keystone/policy.d
EOF
chown root:keystone /etc/keystone/keystone.conf; chmod 640 /etc/keystone/keystone.conf
install -d -o keystone -g keystone /var/log/keystone /var/lib/keystone
KS=(setpriv --reuid keystone --regid keystone --init-groups)
if ! alive keystone; then
  (cd /var/lib/keystone && "${KS[@]}" keystone-manage db_sync) >> "$LOGD/keystone-manage.out" 2>&1
  wal /var/lib/keystone/keystone.sqlite
  keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone >> "$LOGD/keystone-manage.out" 2>&1
  keystone-manage credential_setup --keystone-user keystone --keystone-group keystone >> "$LOGD/keystone-manage.out" 2>&1
  (cd /var/lib/keystone && "${KS[@]}" keystone-manage bootstrap --bootstrap-password "$PW" \
    --bootstrap-admin-url http://127.0.0.1:5000/v3/ --bootstrap-internal-url http://127.0.0.1:5000/v3/ \
    --bootstrap-public-url http://127.0.0.1:5000/v3/ --bootstrap-region-id RegionOne) >> "$LOGD/keystone-manage.out" 2>&1
fi
start keystone keystone /var/lib/keystone /usr/bin/uwsgi "${UWSGI_COMMON[@]}" \
  --http-socket 127.0.0.1:5000 --wsgi-file /usr/bin/keystone-wsgi-public --logto /var/log/keystone/keystone-uwsgi.log
wait_http http://127.0.0.1:5000/v3
log "keystone ready"

# projects, users, roles, services, endpoints (idempotent, one python process = fast)
OSMINI_PW="$PW" $PY - <<'PYEOF'
import os
from keystoneauth1.identity import v3
from keystoneauth1 import session
from keystoneclient.v3 import client
pw = os.environ["OSMINI_PW"]
auth = v3.Password(auth_url="http://127.0.0.1:5000/v3", username="admin", password=pw,
                   project_name="admin", user_domain_id="default", project_domain_id="default")
ks = client.Client(session=session.Session(auth=auth), interface="public")
def one(lst):
    return lst[0] if lst else None
def project(name):
    return one(ks.projects.list(name=name, domain="default")) or ks.projects.create(name, "default")
def user(name, proj):
    u = one(ks.users.list(name=name, domain="default"))
    if u: ks.users.update(u, password=pw)
    else: u = ks.users.create(name, domain="default", password=pw, default_project=proj)
    return u
roles = {r.name: r for r in ks.roles.list()}
for r in ("member", "reader"):
    if r not in roles: roles[r] = ks.roles.create(r)
service = project("service"); demo = project("demo")
for name in ("glance", "placement", "nova", "neutron"):
    ks.roles.grant(roles["admin"], user=user(name, service), project=service)
du = user("demo", demo)
ks.roles.grant(roles["member"], user=du, project=demo); ks.roles.grant(roles["reader"], user=du, project=demo)
cat = {"image": ("glance", "http://127.0.0.1:9292"), "placement": ("placement", "http://127.0.0.1:8778"),
       "compute": ("nova", "http://127.0.0.1:8774/v2.1"), "network": ("neutron", "http://127.0.0.1:9696")}
for stype, (sname, url) in cat.items():
    svc = one(ks.services.list(type=stype)) or ks.services.create(sname, type=stype)
    have = {e.interface: e for e in ks.endpoints.list(service=svc)}
    for itf in ("public", "internal", "admin"):
        if itf in have and have[itf].url != url: ks.endpoints.delete(have[itf]); del have[itf]
        if itf not in have: ks.endpoints.create(svc, url, interface=itf, region="RegionOne")
PYEOF
log "keystone catalog/users ready"

cat > $CONF/adminrc <<EOF
export OS_AUTH_URL=http://127.0.0.1:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin
export OS_PASSWORD=$PW
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_INTERFACE=public
EOF
sed -e 's/OS_USERNAME=admin/OS_USERNAME=demo/' -e 's/OS_PROJECT_NAME=admin/OS_PROJECT_NAME=demo/' $CONF/adminrc > $CONF/demorc
chmod 600 $CONF/adminrc $CONF/demorc

# --------------------------------------------------------------------------- neutron (real)
# Debian's neutron-server 21 (ML2 core plugin, type drivers flat + vlan on physnet1) with the
# project's agentless mechanism driver `osmini` (osmini_ml2.py: binds ports on flat/vlan segments,
# no data plane). No agents, no DHCP, no L3: Nova's fake virt driver plugs nothing.
# An older project stand-in on 9696 (pid file neutron-stub.pid) is stopped first.
if alive neutron-stub; then kill -TERM -- "-$(cat "$RUN/neutron-stub.pid")" 2>/dev/null || true; sleep 1; fi
rm -f "$RUN/neutron-stub.pid" /usr/local/bin/osmini-neutron-stub
check_port neutron-server 9696
SITE=/usr/local/lib/python3.11/dist-packages
install -d "$SITE" "$SITE/osmini_ml2-1.0.dist-info"
install -m 644 "$(dirname "$0")/osmini_ml2.py" "$SITE/osmini_ml2.py"
printf 'Metadata-Version: 2.1\nName: osmini-ml2\nVersion: 1.0\n' > "$SITE/osmini_ml2-1.0.dist-info/METADATA"
printf '[neutron.ml2.mechanism_drivers]\nosmini = osmini_ml2:OsminiMechanismDriver\n' \
  > "$SITE/osmini_ml2-1.0.dist-info/entry_points.txt"
keep_orig /etc/neutron/neutron.conf; keep_orig /etc/neutron/plugins/ml2/ml2_conf.ini
cat > /etc/neutron/neutron.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = rabbit://openstack:$PW@127.0.0.1:5672/
state_path = /var/lib/neutron
log_dir = /var/log/neutron
log_file = neutron-server.log
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
dhcp_agent_notification = false
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = ${DBURL[neutron]}
[keystone_authtoken]
$(authtoken neutron)
[nova]
$(authtoken nova)
[oslo_concurrency]
lock_path = /var/lib/neutron/lock
[oslo_policy]
policy_dirs = /etc/neutron/policy.d
EOF
cat > /etc/neutron/plugins/ml2/ml2_conf.ini <<'EOF'
[ml2]
type_drivers = flat,vlan
# projects use the networks the admin made (pv-net, pv-vlan-N) and make their own on VLANs
# of physnet1 (per-sandbox subnets, CloudShell L3; the osmini driver binds those too)
tenant_network_types = vlan
mechanism_drivers = osmini
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[ml2_type_vlan]
network_vlan_ranges = physnet1:1:4094
[securitygroup]
enable_security_group = true
EOF
chown root:neutron /etc/neutron/neutron.conf /etc/neutron/plugins/ml2/ml2_conf.ini
chmod 640 /etc/neutron/neutron.conf /etc/neutron/plugins/ml2/ml2_conf.ini
install -d -o neutron -g neutron /var/lib/neutron /var/lib/neutron/lock /var/log/neutron
NEUTRON_CONF=(--config-file /etc/neutron/neutron.conf --config-file /etc/neutron/plugins/ml2/ml2_conf.ini)
if ! alive neutron-server; then
  t_db=$(date +%s)
  (cd /var/lib/neutron && setpriv --reuid neutron --regid neutron --init-groups \
     neutron-db-manage "${NEUTRON_CONF[@]}" upgrade heads) >> "$LOGD/neutron-db-manage.out" 2>&1 \
     || { tail -20 "$LOGD/neutron-db-manage.out"; die "neutron-db-manage failed"; }
  wal /var/lib/neutron/neutron.sqlite
  log "neutron database migrated ($(( $(date +%s) - t_db ))s)"
fi
start neutron-server neutron /var/lib/neutron env HOME=/var/lib/neutron /usr/bin/neutron-server "${NEUTRON_CONF[@]}"

# --------------------------------------------------------------------------- glance
check_port glance-api 9292
keep_orig /etc/glance/glance-api.conf
cat > /etc/glance/glance-api.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
log_dir = /var/log/glance
log_file = glance-api.log
enabled_backends = fs:file
[database]
connection = ${DBURL[glance]}
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = /var/lib/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = /var/lib/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = /var/lib/glance/tasks_work_dir/
[keystone_authtoken]
$(authtoken glance)
[paste_deploy]
flavor = keystone
[oslo_concurrency]
lock_path = /var/lib/glance/lock
[oslo_policy]
policy_dirs = /etc/glance/policy.d
EOF
chown root:glance /etc/glance/glance-api.conf; chmod 640 /etc/glance/glance-api.conf
install -d -o glance -g glance /var/lib/glance /var/lib/glance/images /var/lib/glance/staging \
  /var/lib/glance/tasks_work_dir /var/lib/glance/lock /var/log/glance
if ! alive glance-api; then
  (cd /var/lib/glance && setpriv --reuid glance --regid glance --init-groups \
     glance-manage --config-file /etc/glance/glance-api.conf db_sync) >> "$LOGD/glance-manage.out" 2>&1
  wal /var/lib/glance/glance.sqlite
fi
start glance-api glance /var/lib/glance /usr/bin/glance-api --config-file /etc/glance/glance-api.conf

# --------------------------------------------------------------------------- placement
check_port placement-api 8778
keep_orig /etc/placement/placement.conf
cat > /etc/placement/placement.conf <<EOF
[DEFAULT]
log_dir = /var/log/placement
log_file = placement-api.log
[api]
auth_strategy = keystone
[keystone_authtoken]
$(authtoken placement)
[placement_database]
connection = ${DBURL[placement]}
[oslo_policy]
policy_dirs = /etc/placement/policy.d
EOF
chown root:placement /etc/placement/placement.conf; chmod 640 /etc/placement/placement.conf
install -d -o placement -g placement /var/log/placement /var/lib/placement
if ! alive placement-api; then
  (cd /var/lib/placement && setpriv --reuid placement --regid placement --init-groups \
     placement-manage db sync) >> "$LOGD/placement-manage.out" 2>&1
  wal /var/lib/placement/placement.sqlite
fi
start placement-api placement /var/lib/placement /usr/bin/uwsgi "${UWSGI_COMMON[@]}" \
  --http-socket 127.0.0.1:8778 --wsgi-file /usr/bin/placement-api --logto /var/log/placement/placement-uwsgi.log

# --------------------------------------------------------------------------- nova
check_port nova-api 8774
if [ "$FAKE_SNAPSHOT" = 1 ]; then DRIVER=osmini_fake.OsminiFakeDriver; else DRIVER=fake.FakeDriver; fi
keep_orig /etc/nova/nova.conf
cat > /etc/nova/nova.conf <<EOF
[DEFAULT]
host = osmini
my_ip = 127.0.0.1
state_path = /var/lib/nova
log_dir = /var/log/nova
transport_url = rabbit://openstack:$PW@127.0.0.1:5672/
compute_driver = $DRIVER
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_workers = 1
# the info-cache healer: not needed on the loopback cloud (ports change only through Nova's API)
heal_instance_info_cache_interval = 0
# Neutron binds ports without an agent (osmini); the fake driver waits for no vif-plugged event
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
graceful_shutdown_timeout = 5
[api]
auth_strategy = keystone
[api_database]
connection = ${DBURL[nova_api]}
[database]
connection = ${DBURL[nova]}
[keystone_authtoken]
$(authtoken nova)
# validated tokens are cached for 10 s (default 300): a revoked token is refused within 10 s
# (crates/openstack/tests: re-authentication proven against this Keystone)
token_cache_time = 10
[placement]
$(authtoken placement)
[neutron]
$(authtoken nova)
[glance]
region_name = RegionOne
[cinder]
os_region_name = RegionOne
[conductor]
workers = 1
[scheduler]
workers = 1
# maps new compute hosts into cell1 (the explicit discover_hosts below is only a fallback)
discover_hosts_in_cells_interval = 5
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_policy]
policy_dirs = /etc/nova/policy.d
[vnc]
# remote-consoles: the fake driver hands out a console; the URL points at a proxy that is not run here
enabled = true
server_listen = 127.0.0.1
server_proxyclient_address = 127.0.0.1
novncproxy_base_url = http://127.0.0.1:6080/vnc_auto.html
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
EOF
chown root:nova /etc/nova/nova.conf; chmod 640 /etc/nova/nova.conf
install -d -o nova -g nova /var/log/nova /var/lib/nova /var/lib/nova/tmp /var/lib/nova/instances

# nova-compute entry point. The Debian nova-compute package would drag in a hypervisor package
# (nova-compute-kvm|qemu|lxc|ironic -> libvirt/qemu/ironicclient); the console script is all we need.
cat > /usr/local/bin/osmini-nova-compute <<'EOF'
#!/usr/bin/python3
"""nova-compute for the fake virt driver (python3-nova from Debian, no hypervisor packages).
Also registers nova.virt.osmini_fake.OsminiFakeDriver, a fake.FakeDriver that
  * uploads 64 KiB of zeros to Glance in snapshot(), so createImage images become 'active'
    (stock FakeDriver leaves them 'queued' forever), and
  * re-adopts this host's instances at start-up, so a restarted nova-compute can still
    stop/start/reboot servers it booted before (stock FakeDriver keeps them only in memory)."""
import io, sys, types
sys.argv[0] = "nova-compute"
from nova.cmd import compute            # first: eventlet monkey patching
from nova.virt import fake
from nova.image import glance
from nova import context as nova_context, objects
from nova.compute import power_state, vm_states
from oslo_log import log as logging
LOG = logging.getLogger("nova.virt.osmini_fake")

class OsminiFakeDriver(fake.FakeDriver):
    def init_host(self, host):
        super().init_host(host)
        try:
            ctxt = nova_context.get_admin_context()
            for inst in objects.InstanceList.get_by_host(ctxt, host):
                if inst.vm_state in (vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
                                     vm_states.SUSPENDED, vm_states.RESCUED):
                    st = power_state.RUNNING if inst.vm_state == vm_states.ACTIVE else power_state.SHUTDOWN
                    self.instances[inst.uuid] = fake.FakeInstance(inst.name, st, inst.uuid)
            LOG.info("osmini: re-adopted %d instance(s)", len(self.instances))
        except Exception:
            LOG.exception("osmini: could not re-adopt instances")

    def snapshot(self, context, instance, image_id, update_task_state):
        super().snapshot(context, instance, image_id, update_task_state)
        glance.API().update(context, image_id, {"disk_format": "raw", "container_format": "bare"},
                            data=io.BytesIO(b"\0" * 65536), purge_props=False)

mod = types.ModuleType("nova.virt.osmini_fake")
mod.OsminiFakeDriver = OsminiFakeDriver
sys.modules["nova.virt.osmini_fake"] = mod
sys.exit(compute.main())
EOF
chmod 755 /usr/local/bin/osmini-nova-compute

NM=(setpriv --reuid nova --regid nova --init-groups nova-manage)
if ! alive nova-api || ! alive nova-conductor; then
  ( cd /var/lib/nova
    "${NM[@]}" api_db sync
    "${NM[@]}" cell_v2 map_cell0 --database_connection "${DBURL[nova_cell0]}"
    cells=$("${NM[@]}" cell_v2 list_cells 2>/dev/null)
    echo "$cells" | grep -q ' cell0 ' || die "nova-manage cell_v2 list_cells failed"
    echo "$cells" | grep -q ' cell1 ' || "${NM[@]}" cell_v2 create_cell --name cell1
    # the cell mappings keep the DB/RabbitMQ URLs (with the password): refresh them every run
    "${NM[@]}" cell_v2 update_cell --cell_uuid 00000000-0000-0000-0000-000000000000 \
      --database_connection "${DBURL[nova_cell0]}" --transport-url none:///
    for c1 in $("${NM[@]}" cell_v2 list_cells 2>/dev/null | awk -F'|' '$2 ~ / cell1 /{gsub(/ /,"",$3); print $3}'); do
      "${NM[@]}" cell_v2 update_cell --cell_uuid "$c1" --database_connection "${DBURL[nova]}" \
        --transport-url "rabbit://openstack:$PW@127.0.0.1:5672/"
    done
    "${NM[@]}" db sync ) >> "$LOGD/nova-manage.out" 2>&1 || { tail -20 "$LOGD/nova-manage.out"; die "nova-manage failed"; }
  wal /var/lib/nova/nova_api.sqlite /var/lib/nova/nova.sqlite /var/lib/nova/nova_cell0.sqlite
  log "nova databases synced"
fi
start nova-api nova /var/lib/nova /usr/bin/uwsgi "${UWSGI_COMMON[@]}" \
  --http-socket 127.0.0.1:8774 --wsgi-file /usr/bin/nova-api-wsgi --logto /var/log/nova/nova-api-uwsgi.log
start nova-conductor nova /var/lib/nova /usr/bin/nova-conductor --config-file /etc/nova/nova.conf
start nova-scheduler nova /var/lib/nova /usr/bin/nova-scheduler --config-file /etc/nova/nova.conf
start nova-compute nova /var/lib/nova /usr/local/bin/osmini-nova-compute --config-file /etc/nova/nova.conf

wait_http http://127.0.0.1:9292/ 90;  log "glance ready"
wait_http http://127.0.0.1:8778/ 60;  log "placement ready"
wait_http http://127.0.0.1:8774/ 90;  log "nova-api ready"
wait_http http://127.0.0.1:9696/ 120; log "neutron-server ready"

# --------------------------------------------------------------------------- post-start: hosts, flavors, image
# wait for nova-compute to report in and for its host to be mapped into cell1 (os-hypervisors
# lists only mapped hosts); the scheduler maps it within ~5 s, nova-manage is the fallback
OSMINI_PW="$PW" $PY - <<'PYEOF2'
import os, subprocess, time
from keystoneauth1.identity import v3
from keystoneauth1 import session
s = session.Session(auth=v3.Password(auth_url="http://127.0.0.1:5000/v3", username="admin",
    password=os.environ["OSMINI_PW"], project_name="admin", user_domain_id="default", project_domain_id="default"))
ep = {"service_type": "compute", "interface": "public"}
for i in range(240):
    hyp = s.get("/os-hypervisors", endpoint_filter=ep, raise_exc=False)
    if hyp.ok and hyp.json()["hypervisors"]:
        break
    if i in (60, 120):
        subprocess.call("cd /var/lib/nova && setpriv --reuid nova --regid nova --init-groups "
                        "nova-manage cell_v2 discover_hosts >> /var/log/osmini/nova-manage.out 2>&1", shell=True)
    time.sleep(1)
else:
    raise SystemExit("nova-compute did not register/map within 240 s (see /var/log/nova/osmini-nova-compute.log)")
PYEOF2
log "nova-compute registered and mapped"

OSMINI_PW="$PW" $PY - <<'PYEOF'
import os, io
from keystoneauth1.identity import v3
from keystoneauth1 import session
s = session.Session(auth=v3.Password(auth_url="http://127.0.0.1:5000/v3", username="admin",
    password=os.environ["OSMINI_PW"], project_name="admin", user_domain_id="default", project_domain_id="default"))
ep = {"service_type": "compute", "interface": "public"}
have = {f["name"] for f in s.get("/flavors", endpoint_filter=ep).json()["flavors"]}
for name, vcpus, ram, disk in (("m1.nano", 1, 128, 1), ("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20)):
    if name not in have:
        s.post("/flavors", endpoint_filter=ep, json={"flavor": {"name": name, "vcpus": vcpus, "ram": ram,
               "disk": disk, "os-flavor-access:is_public": True}})
gp = {"service_type": "image", "interface": "public"}
imgs = s.get("/v2/images?name=tiny", endpoint_filter=gp).json()["images"]
if not any(i["status"] == "active" for i in imgs):
    for i in imgs:
        s.delete("/v2/images/%s" % i["id"], endpoint_filter=gp)
    img = s.post("/v2/images", endpoint_filter=gp, json={"name": "tiny", "disk_format": "raw",
                 "container_format": "bare", "visibility": "public"}).json()
    s.put("/v2/images/%s/file" % img["id"], endpoint_filter=gp, data=io.BytesIO(b"\0" * 1048576),
          headers={"Content-Type": "application/octet-stream"})
PYEOF
log "flavors m1.nano/m1.tiny/m1.small and public raw image 'tiny' (1 MiB) ready"

# networks (made by admin: provider attributes): pv-net = flat physnet1, 10.99.0.0/24 without DHCP;
# pv-vlan-N = VLAN N on physnet1 (N in OSMINI_VLANS), what CloudStack vlan://N NICs map to
OSMINI_PW="$PW" OSMINI_VLANS="${OSMINI_VLANS:-100 200}" $PY - <<'PYEOF'
import os
from keystoneauth1.identity import v3
from keystoneauth1 import session
s = session.Session(auth=v3.Password(auth_url="http://127.0.0.1:5000/v3", username="admin",
    password=os.environ["OSMINI_PW"], project_name="admin", user_domain_id="default", project_domain_id="default"))
ep = {"service_type": "network", "interface": "public"}
# owned by project demo: Neutron's default policy lets a network's owner set port MACs
# (create_port:mac_address = network owner or admin), which CloudStack NICs need
demo = [p for p in s.get("/projects?name=demo", endpoint_filter={"service_type": "identity",
        "interface": "public"}).json()["projects"]][0]["id"]
def net(name, ntype, seg, cidr):
    have = s.get("/v2.0/networks?name=%s" % name, endpoint_filter=ep).json()["networks"]
    if have and have[0]["project_id"] == demo:
        return
    for old in have:   # made by an older version of this script (admin-owned)
        s.delete("/v2.0/networks/%s" % old["id"], endpoint_filter=ep)
    body = {"name": name, "project_id": demo, "shared": False, "provider:network_type": ntype,
            "provider:physical_network": "physnet1"}
    if seg is not None:
        body["provider:segmentation_id"] = seg
    n = s.post("/v2.0/networks", endpoint_filter=ep, json={"network": body}).json()["network"]
    s.post("/v2.0/subnets", endpoint_filter=ep, json={"subnet": {"name": name + "-subnet", "network_id": n["id"], "project_id": demo,
           "ip_version": 4, "cidr": cidr, "enable_dhcp": False}})
net("pv-net", "flat", None, "10.99.0.0/24")
for v in os.environ["OSMINI_VLANS"].split():
    net("pv-vlan-%d" % int(v), "vlan", int(v), "10.98.%d.0/24" % (int(v) % 256))
PYEOF
log "neutron networks pv-net (flat) and pv-vlan-N (VLAN ${OSMINI_VLANS:-100 200}) ready"

cat <<EOF

================ minimal OpenStack is up ($(( $(date +%s) - T0 ))s, DB=$DB, driver=$DRIVER) ================
  auth URL : http://127.0.0.1:5000/v3   (Keystone v3, region RegionOne, domain Default)
  admin    : user admin / password $PW / project admin      -> source $CONF/adminrc
  demo     : user demo  / password $PW / project demo (member) -> source $CONF/demorc
  endpoints: compute http://127.0.0.1:8774/v2.1 (microversions 2.1-2.93)  image http://127.0.0.1:9292
             placement http://127.0.0.1:8778  network (Neutron ML2/osmini) http://127.0.0.1:9696
  boot     : flavors m1.nano m1.tiny m1.small, image 'tiny'; use "networks": "none" (microversion >= 2.37)
  pids     : $RUN/*.pid   logs: $LOGD, /var/log/{keystone,glance,placement,nova}
  stop     : openstack-down.sh
EOF
