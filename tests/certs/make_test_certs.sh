#!/bin/sh
# Test PKI for the TLS tests, made fresh by each test with openssl (nothing
# secret is kept in the repository).
#
#   make_test_certs.sh DIR            ca, server, router-client, rogue-ca, rogue-client
#   make_test_certs.sh DIR reissue    a new server.crt (new serial) for the same server.key
#
# DIR/NAME.crt and DIR/NAME.key, P-256 keys, valid for two days:
#   ca             the deployment's CA
#   server         signed by ca; SAN IP:127.0.0.1, DNS:localhost; serverAuth
#   router-client  signed by ca; clientAuth (the router's certificate to workers)
#   rogue-ca       an unrelated CA
#   rogue-client   signed by rogue-ca; clientAuth
# `reissue` writes the new certificate beside the old one and renames it over
# server.crt, so a reader sees either the old or the new file, never half.
set -eu

dir=$1
mode=${2:-all}
mkdir -p "$dir"
cd "$dir"

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
}

new_ca() {
  new_key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$1" -days 2 -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# sign NAME CA EXTENSIONS [OUT]: a certificate for NAME.key signed by CA.
sign() {
  printf '%s\n' "$3" > "$1.ext"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -days 2 \
    -set_serial "0x$(openssl rand -hex 12)" -extfile "$1.ext" -out "${4:-$1.crt}" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

server_ext='subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth
basicConstraints=CA:FALSE'
client_ext='extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE'

case "$mode" in
  all)
    new_ca ca
    new_key server
    sign server ca "$server_ext"
    new_key router-client
    sign router-client ca "$client_ext"
    new_ca rogue-ca
    new_key rogue-client
    sign rogue-client rogue-ca "$client_ext"
    ;;
  reissue)
    sign server ca "$server_ext" server.crt.new
    mv -f server.crt.new server.crt
    ;;
  *)
    echo "usage: $0 DIR [reissue]" >&2
    exit 2
    ;;
esac
