#!/usr/bin/env bash
# Install (or upgrade, or uninstall) openfaas-iam on an OpenFaaS CE cluster: the steps of
# docs/install.md, each followed by its check; stops at the first failure and says how to fix it.
# Run it again to upgrade: keys and existing secrets are kept, the IAM objects, the functions
# and the Kubernetes objects are updated.
set -uo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [--dry-run] [install|uninstall]
       scripts/install.sh --help

Installs openfaas-iam on OpenFaaS CE (install is the default; run it again to upgrade), or
removes it (uninstall: the functions, their secrets and the Kubernetes objects; the
iam.openfaas.com CRDs stay, delete them yourself if nothing else uses them).
Every step is followed by a check; the first failure stops the script with the fix.

  --dry-run   print the commands and checks, run nothing (secret values are never printed)
  --help      this text

Settings (environment):
  GATEWAY             the OpenFaaS gateway itself, for the admin (default http://127.0.0.1:8080,
                      e.g. kubectl port-forward -n openfaas svc/gateway 8080:8080). Never the
                      proxy: OPENFAAS_URL is ignored here, so a leftover one pointing at the
                      proxy cannot send the deploy through a proxy that does not exist yet.
  PUBLIC_GATEWAY_URL  the gateway's public URL, e.g. https://gateway.example.com (required)
  AUTHZ_HOST          the proxy's own host, e.g. openfaas-api.example.com (required)
  SIGNIN_HOST         the sign-in page's own host, e.g. iam.example.com (optional: no page)
  CLUSTER_ISSUER      cert-manager ClusterIssuer for the hosts' TLS (default letsencrypt-prod)
  ROUTES              ingress (default: Ingress, ingress-nginx) or gateway-api (HTTPRoutes)
  REGISTRY, TAG       where the images are pushed (no images are published: build your own);
                      TAG defaults to 0.1.0. REGISTRY is required unless SKIP_BUILD=1
  SKIP_BUILD=1        the images are already in REGISTRY: deploy only
  IAM_CONFIG          the IAM objects (default examples/iam.yaml)
  IAM_CONFIG_SOURCE   iam-config (default: the secret) or kubernetes (CRDs in namespace openfaas)
  REDIS=1             also run Redis (deploy/redis/) and use it (REDIS_URL=redis://redis.openfaas:6379/0)
  SSO_ISSUER, SSO_CLIENT_ID, SSO_CLIENT_SECRET   the sign-in page's JwtIssuer, client and secret
  CA_BUNDLE           a PEM file: the CA of IdPs (or Redis) behind a private CA
  AUDIT_WEBHOOK_URL, AUDIT_WEBHOOK_SECRET        signed audit webhooks (both, or neither)
  ALLOW_NO_CRON=1     go on without cron-connector (then keys never rotate)
  WORK_DIR            where the kustomize overlay is written (default .install)
  OPENFAAS_IAM        the openfaas-iam command (default: .venv/bin/openfaas-iam, else on PATH)
EOF
}

DRY=0
ACTION=install
for arg in "$@"; do
  case "$arg" in
    --help | -h) usage; exit 0 ;;
    --dry-run) DRY=1 ;;
    install | uninstall) ACTION=$arg ;;
    *) echo "install.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
GATEWAY=${GATEWAY:-http://127.0.0.1:8080}
TAG=${TAG:-0.1.0}
CLUSTER_ISSUER=${CLUSTER_ISSUER:-letsencrypt-prod}
ROUTES=${ROUTES:-ingress}
IAM_CONFIG=${IAM_CONFIG:-examples/iam.yaml}
IAM_CONFIG_SOURCE=${IAM_CONFIG_SOURCE:-iam-config}
WORK_DIR=${WORK_DIR:-.install}
MIN_KUBERNETES=28     # 1.28
MIN_FAAS_CLI=0.16.0
if [ -z "${OPENFAAS_IAM:-}" ]; then
  if [ -x "$ROOT/.venv/bin/openfaas-iam" ]; then OPENFAAS_IAM="$ROOT/.venv/bin/openfaas-iam"; else OPENFAAS_IAM=openfaas-iam; fi
fi
if [ -n "${OPENFAAS_URL:-}" ] && [ "${OPENFAAS_URL%/}" != "${GATEWAY%/}" ]; then
  echo "note: OPENFAAS_URL=$OPENFAAS_URL is ignored; every faas-cli call here uses GATEWAY=$GATEWAY"
fi
export OPENFAAS_URL=$GATEWAY

STEP=""
FIX=""
step() { STEP=$1; FIX=$2; echo; echo "==> $STEP"; }
fail() {
  echo "FAILED: $STEP" >&2
  [ -n "${1:-}" ] && printf '%s\n' "$1" | sed 's/^/  | /' >&2
  echo "fix: $FIX" >&2
  exit 1
}
# run CMD...: print it, run it (not with --dry-run), stop on failure.
run() {
  echo "+ $*"
  [ "$DRY" = 1 ] && return 0
  local out
  out=$("$@" 2>&1) || fail "$out"
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  return 0
}
# check EXPECTED CMD...: run CMD; its output must contain EXPECTED (a grep -E pattern).
check() {
  local expected=$1
  shift
  echo "  check: $*   (expect: $expected)"
  [ "$DRY" = 1 ] && return 0
  local out
  out=$("$@" 2>&1) || fail "$out"
  printf '%s\n' "$out" | grep -Eq -- "$expected" || fail "$out"
  echo "  got: $(printf '%s\n' "$out" | grep -E -m1 -- "$expected")"
}
need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || { STEP="prerequisites"; FIX=$2; fail "$1: not found"; }
}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
secret_exists() { faas-cli secret list --gateway "$GATEWAY" 2>/dev/null | awk 'NR>1 {print $1}' | grep -qx "$1"; }
kube_secret_exists() { kubectl -n "$1" get secret "$2" -o name >/dev/null 2>&1; }
secret_file() {
  # A value goes to faas-cli/kubectl as a file (mode 0600), never on a command line.
  local f="$WORK_DIR/secrets/$1"
  [ "$DRY" = 1 ] || (umask 077 && mkdir -p "$WORK_DIR/secrets" && printf '%s' "$2" >"$f")
  echo "$f"
}

# The overlay of deploy/: the routes for these hosts, and the components in use.
write_overlay() {
  local dir="$WORK_DIR/kustomize" rel components=()
  mkdir -p "$dir"
  rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT/deploy" "$dir")
  [ "${REDIS:-}" = 1 ] && components+=("$rel/redis")
  [ "$IAM_CONFIG_SOURCE" = kubernetes ] && components+=("$rel/crd-source")
  [ "$ROUTES" = gateway-api ] && components+=("$rel/gateway-api")
  local kind=Ingress host_patch
  if [ "$ROUTES" = gateway-api ]; then kind=HTTPRoute; fi
  {
    echo "# Written by scripts/install.sh: deploy/ with this install's hosts and components."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [\"$rel\"]"
    if [ ${#components[@]} -gt 0 ]; then
      echo "components:"
      for c in "${components[@]}"; do echo "  - \"$c\""; done
    fi
    echo "patches:"
    for pair in "iam-authz=$AUTHZ_HOST" "iam-signin=${SIGNIN_HOST:-}"; do
      local name=${pair%%=*} host=${pair#*=}
      if [ -z "$host" ]; then
        echo "  - target: {kind: $kind, name: $name}"
        echo "    patch: |-"
        echo "      \$patch: delete"
        echo "      apiVersion: $([ $kind = Ingress ] && echo networking.k8s.io/v1 || echo gateway.networking.k8s.io/v1)"
        echo "      kind: $kind"
        echo "      metadata: {name: $name, namespace: openfaas-fn}"
        continue
      fi
      if [ $kind = Ingress ]; then
        host_patch="[{\"op\": \"replace\", \"path\": \"/spec/rules/0/host\", \"value\": \"$host\"}, {\"op\": \"replace\", \"path\": \"/spec/tls/0/hosts/0\", \"value\": \"$host\"}, {\"op\": \"replace\", \"path\": \"/metadata/annotations/cert-manager.io~1cluster-issuer\", \"value\": \"$CLUSTER_ISSUER\"}]"
      else
        host_patch="[{\"op\": \"replace\", \"path\": \"/spec/hostnames/0\", \"value\": \"$host\"}]"
      fi
      echo "  - target: {kind: $kind, name: $name}"
      echo "    patch: |-"
      echo "      $host_patch"
    done
  } >"$dir/kustomization.yaml"
  echo "$dir"
}

# -- prerequisites -----------------------------------------------------------------------------
step "prerequisites: kubectl, faas-cli >= $MIN_FAAS_CLI, openfaas-iam; Kubernetes >= 1.$MIN_KUBERNETES; OpenFaaS CE" \
  "install kubectl (https://kubernetes.io/docs/tasks/tools/) and faas-cli (curl -sSL https://cli.openfaas.com | sh), run 'make unit' for .venv/bin/openfaas-iam, and point kubectl at the cluster (kubectl config use-context ...)"
need kubectl "install kubectl and point it at the cluster"
need faas-cli "install faas-cli $MIN_FAAS_CLI or newer: curl -sSL https://cli.openfaas.com | sh"
need "$OPENFAAS_IAM" "run 'make unit' (creates .venv/bin/openfaas-iam) or set OPENFAAS_IAM"
need python3 "install Python 3"
if [ "$DRY" = 0 ]; then
  fc=$(faas-cli version --short-version 2>/dev/null | tail -1 | tr -d ' v')
  if [ "$fc" != dev ] && ! version_ge "${fc:-0}" "$MIN_FAAS_CLI"; then
    FIX="upgrade faas-cli: curl -sSL https://cli.openfaas.com | sh"; fail "faas-cli $fc is older than $MIN_FAAS_CLI"
  fi
  server=$(kubectl get --raw /version 2>&1) || { FIX="kubectl cannot reach the cluster: check 'kubectl config current-context' and your credentials"; fail "$server"; }
  minor=$(printf '%s' "$server" | python3 -c 'import json,sys; print(int("".join(c for c in json.load(sys.stdin)["minor"] if c.isdigit())))')
  [ "$minor" -ge "$MIN_KUBERNETES" ] || { FIX="upgrade the cluster to Kubernetes 1.$MIN_KUBERNETES or newer"; fail "Kubernetes 1.$minor"; }
  echo "  got: Kubernetes 1.$minor, faas-cli $fc"
fi
FIX="install OpenFaaS CE: helm repo add openfaas https://openfaas.github.io/faas-netes/ && kubectl apply -f https://raw.githubusercontent.com/openfaas/faas-netes/master/namespaces.yml && helm upgrade --install openfaas openfaas/openfaas --namespace openfaas"
check "namespace/openfaas-fn" kubectl get namespace openfaas-fn -o name
check "deployment.apps/gateway" kubectl -n openfaas get deployment gateway -o name
if [ "$ACTION" = install ]; then
  [ -n "${PUBLIC_GATEWAY_URL:-}" ] || { FIX="set PUBLIC_GATEWAY_URL, e.g. https://gateway.example.com"; fail "PUBLIC_GATEWAY_URL is not set"; }
  [ -n "${AUTHZ_HOST:-}" ] || { FIX="set AUTHZ_HOST, the proxy's own host, e.g. openfaas-api.example.com"; fail "AUTHZ_HOST is not set"; }
  [ "${SKIP_BUILD:-}" = 1 ] || [ -n "${REGISTRY:-}" ] || { FIX="set REGISTRY (your registry, e.g. ghcr.io/your-org: no images are published), or SKIP_BUILD=1 if the images are already there"; fail "REGISTRY is not set"; }
  [ -z "${AUDIT_WEBHOOK_URL:-}" ] || [ -n "${AUDIT_WEBHOOK_SECRET:-}" ] || { FIX="set AUDIT_WEBHOOK_SECRET (the webhook's HMAC key) with AUDIT_WEBHOOK_URL"; fail "AUDIT_WEBHOOK_SECRET is not set"; }
  [ "$IAM_CONFIG_SOURCE" = kubernetes ] || [ "$IAM_CONFIG_SOURCE" = iam-config ] || { FIX="IAM_CONFIG_SOURCE is iam-config or kubernetes"; fail "IAM_CONFIG_SOURCE=$IAM_CONFIG_SOURCE"; }
  step "cron-connector (not part of CE: without it keys never rotate)" \
    "helm upgrade --install cron-connector openfaas/cron-connector --namespace openfaas   (or set ALLOW_NO_CRON=1 to go on without key rotation)"
  if [ "${ALLOW_NO_CRON:-}" = 1 ]; then
    echo "  skipped (ALLOW_NO_CRON=1): iam-rotate will not run, the signing key will not rotate"
  else
    check "deployment.apps/cron-connector" kubectl -n openfaas get deployment cron-connector -o name
  fi
  step "IAM objects: $IAM_CONFIG lints clean" "fix the problems listed above in $IAM_CONFIG ($OPENFAAS_IAM lint $IAM_CONFIG)"
  check "^ok: " "$OPENFAAS_IAM" lint "$IAM_CONFIG"
fi

# -- faas-cli login ------------------------------------------------------------------------------
step "faas-cli login to the gateway ($GATEWAY) as admin" \
  "reach the gateway itself (kubectl port-forward -n openfaas svc/gateway 8080:8080, then GATEWAY=http://127.0.0.1:8080); the password is the basic-auth secret in the openfaas namespace"
echo "+ kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 -d | faas-cli login --gateway $GATEWAY --username admin --password-stdin"
if [ "$DRY" = 0 ]; then
  encoded=$(kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' 2>&1) || fail "$encoded"
  ADMIN_PASSWORD=$(printf '%s' "$encoded" | base64 -d) || fail "the basic-auth secret's basic-auth-password is not base64"
  out=$(printf '%s' "$ADMIN_PASSWORD" | faas-cli login --gateway "$GATEWAY" --username admin --password-stdin 2>&1) || fail "$out"
fi
check "^Function" faas-cli list --gateway "$GATEWAY"

if [ "$ACTION" = uninstall ]; then
  step "remove the functions" "check the gateway (faas-cli list --gateway $GATEWAY)"
  for fn in iam-authz iam-token iam-rotate iam-discovery; do
    if [ "$DRY" = 1 ] || faas-cli describe "$fn" --gateway "$GATEWAY" >/dev/null 2>&1; then run faas-cli remove "$fn" --gateway "$GATEWAY"; fi
  done
  step "remove the secrets" "remove them with faas-cli secret remove NAME --gateway $GATEWAY"
  for s in iam-config iam-signing-keys iam-public-keys iam-cache-key redis-password sso-client-secret ca-bundle audit-webhook-secret; do
    if [ "$DRY" = 1 ] || secret_exists "$s"; then run faas-cli secret remove "$s" --gateway "$GATEWAY"; fi
  done
  for s in "openfaas-fn basic-auth" "openfaas-fn redis-ca" "openfaas redis-password"; do
    run kubectl -n ${s% *} delete secret ${s#* } --ignore-not-found
  done
  step "remove the Kubernetes objects (routes, Redis, RBAC; the CRDs stay)" "kubectl delete -k $WORK_DIR/kustomize"
  dir=$WORK_DIR/kustomize
  if [ -f "$dir/kustomization.yaml" ]; then run kubectl delete -k "$dir" --ignore-not-found; else run kubectl delete -k deploy --ignore-not-found; fi
  routes=ingress
  [ "$ROUTES" = gateway-api ] && routes=httproute
  check "^$|No resources found" kubectl -n openfaas-fn get "$routes" -l app.kubernetes.io/part-of=openfaas-iam -o name
  echo
  echo "openfaas-iam is removed."
  exit 0
fi

# -- secrets -------------------------------------------------------------------------------------
step "secrets in openfaas-fn (existing ones are kept; iam-config is updated)" \
  "check the gateway's secrets API (faas-cli secret list --gateway $GATEWAY); a secret of the same name made some other way may need removing first"
SECRETS=(iam-signing-keys iam-public-keys iam-cache-key redis-password sso-client-secret)
if [ "$IAM_CONFIG_SOURCE" = iam-config ]; then
  SECRETS+=(iam-config)
  if [ "$DRY" = 1 ] || secret_exists iam-config; then
    run faas-cli secret update iam-config --from-file="$IAM_CONFIG" --gateway "$GATEWAY"
  else
    run faas-cli secret create iam-config --from-file="$IAM_CONFIG" --gateway "$GATEWAY"
  fi
fi
if [ "$DRY" = 1 ] || ! secret_exists iam-signing-keys; then
  mkdir -p "$WORK_DIR/secrets"
  rm -f "$WORK_DIR/secrets/iam-signing-keys" "$WORK_DIR/secrets/iam-public-keys"
  run "$OPENFAAS_IAM" keys init -o "$WORK_DIR/secrets/iam-signing-keys" --public-output "$WORK_DIR/secrets/iam-public-keys"
  run faas-cli secret create iam-signing-keys --from-file="$WORK_DIR/secrets/iam-signing-keys" --gateway "$GATEWAY"
  if [ "$DRY" = 1 ] || ! secret_exists iam-public-keys; then
    run faas-cli secret create iam-public-keys --from-file="$WORK_DIR/secrets/iam-public-keys" --gateway "$GATEWAY"
  else
    run faas-cli secret update iam-public-keys --from-file="$WORK_DIR/secrets/iam-public-keys" --gateway "$GATEWAY"
  fi
  rm -f "$WORK_DIR/secrets/iam-signing-keys" "$WORK_DIR/secrets/iam-public-keys"
else
  echo "  iam-signing-keys exists: kept (iam-rotate rotates it)"
fi
if [ "$DRY" = 1 ] || ! secret_exists iam-cache-key; then
  run faas-cli secret create iam-cache-key --from-file="$(secret_file iam-cache-key "$(python3 -c 'import secrets; print(secrets.token_hex(32))')")" --gateway "$GATEWAY"
else
  echo "  iam-cache-key exists: kept"
fi
REDIS_PASSWORD=${REDIS_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}
if [ "$DRY" = 1 ] || ! secret_exists redis-password; then
  run faas-cli secret create redis-password --from-file="$(secret_file redis-password "$REDIS_PASSWORD")" --gateway "$GATEWAY"
  if [ "${REDIS:-}" = 1 ]; then
    run kubectl -n openfaas delete secret redis-password --ignore-not-found
    run kubectl -n openfaas create secret generic redis-password --from-file=redis-password="$WORK_DIR/secrets/redis-password"
  fi
else
  echo "  redis-password exists: kept"
  if [ "${REDIS:-}" = 1 ] && ! kube_secret_exists openfaas redis-password; then
    FIX="the redis-password function secret exists but not its copy in openfaas: remove it (faas-cli secret remove redis-password --gateway $GATEWAY) and run again"
    fail "secret openfaas/redis-password is missing"
  fi
fi
if [ "$DRY" = 1 ] || ! secret_exists sso-client-secret; then
  run faas-cli secret create sso-client-secret --from-file="$(secret_file sso-client-secret "${SSO_CLIENT_SECRET:-unused: no sign-in page}")" --gateway "$GATEWAY"
else
  echo "  sso-client-secret exists: kept (faas-cli secret update sso-client-secret to change it)"
fi
if [ -n "${AUDIT_WEBHOOK_URL:-}" ]; then
  SECRETS+=(audit-webhook-secret)
  if [ "$DRY" = 1 ] || secret_exists audit-webhook-secret; then
    run faas-cli secret update audit-webhook-secret --from-file="$(secret_file audit-webhook-secret "$AUDIT_WEBHOOK_SECRET")" --gateway "$GATEWAY"
  else
    run faas-cli secret create audit-webhook-secret --from-file="$(secret_file audit-webhook-secret "$AUDIT_WEBHOOK_SECRET")" --gateway "$GATEWAY"
  fi
fi
rm -rf "$WORK_DIR/secrets"
if [ -n "${CA_BUNDLE:-}" ]; then
  run kubectl -n openfaas-fn delete secret ca-bundle --ignore-not-found
  run kubectl -n openfaas-fn create secret generic ca-bundle --from-file=ca.crt="$CA_BUNDLE"
fi
if [ "$DRY" = 1 ] || ! kube_secret_exists openfaas-fn basic-auth; then
  echo "+ kubectl -n openfaas-fn create secret generic basic-auth --from-literal=basic-auth-user=admin --from-file=basic-auth-password=<the gateway's admin password>"
  if [ "$DRY" = 0 ]; then
    f=$(secret_file basic-auth-password "$ADMIN_PASSWORD")
    out=$(kubectl -n openfaas-fn create secret generic basic-auth --from-literal=basic-auth-user=admin --from-file=basic-auth-password="$f" 2>&1)
    rc=$?
    rm -rf "$WORK_DIR/secrets"
    [ $rc = 0 ] || fail "$out"
  fi
else
  echo "  basic-auth (openfaas-fn) exists: kept"
fi
check "iam-public-keys" faas-cli secret list --gateway "$GATEWAY"
for s in "${SECRETS[@]}"; do
  [ "$DRY" = 1 ] || secret_exists "$s" || fail "secret $s is missing after creation"
done
check "secret/basic-auth" kubectl -n openfaas-fn get secret basic-auth -o name

# -- Kubernetes objects --------------------------------------------------------------------------
step "Kubernetes objects: host routes with TLS${REDIS:+, Redis}$([ "$IAM_CONFIG_SOURCE" = kubernetes ] && echo ', CRDs and read RBAC')" \
  "look at the error above; kubectl kustomize $WORK_DIR/kustomize shows what is applied"
if [ "$DRY" = 1 ]; then echo "+ write $WORK_DIR/kustomize/kustomization.yaml"; dir="$WORK_DIR/kustomize"; else dir=$(write_overlay); fi
run kubectl apply -k "$dir"
if [ "$ROUTES" = gateway-api ]; then
  check "httproute.gateway.networking.k8s.io/iam-authz" kubectl -n openfaas-fn get httproute iam-authz -o name
else
  check "ingress.networking.k8s.io/iam-authz" kubectl -n openfaas-fn get ingress iam-authz -o name
fi
if [ "${REDIS:-}" = 1 ]; then
  check "deployment.apps/redis" kubectl -n openfaas get deployment redis -o name
fi
if [ "$IAM_CONFIG_SOURCE" = kubernetes ]; then
  run kubectl wait --for=condition=established --timeout=60s crd/jwtissuers.iam.openfaas.com crd/policies.iam.openfaas.com crd/roles.iam.openfaas.com
  run kubectl apply -n openfaas -f "$IAM_CONFIG"
  check "policy.iam.openfaas.com/" kubectl -n openfaas get policies.iam.openfaas.com -o name
fi

# -- the functions -------------------------------------------------------------------------------
DEPLOY_ENV=(PUBLIC_GATEWAY_URL="$PUBLIC_GATEWAY_URL" TAG="$TAG" IAM_CONFIG_SOURCE="$IAM_CONFIG_SOURCE")
[ -n "${REGISTRY:-}" ] && DEPLOY_ENV+=(REGISTRY="$REGISTRY")
[ -n "${SIGNIN_HOST:-}" ] && DEPLOY_ENV+=(SIGNIN_ORIGIN="https://$SIGNIN_HOST")
# The sign-in page suggests faas-cli commands for the proxy at its host root.
[ -n "${AUTHZ_HOST:-}" ] && DEPLOY_ENV+=(PROXY_URL="https://$AUTHZ_HOST")
[ -n "${SSO_ISSUER:-}" ] && DEPLOY_ENV+=(SSO_ISSUER="$SSO_ISSUER")
[ -n "${SSO_CLIENT_ID:-}" ] && DEPLOY_ENV+=(SSO_CLIENT_ID="$SSO_CLIENT_ID")
[ "${REDIS:-}" = 1 ] && DEPLOY_ENV+=(REDIS_URL="redis://redis.openfaas:6379/0")
[ "$IAM_CONFIG_SOURCE" = kubernetes ] && DEPLOY_ENV+=(IAM_CONFIG_MOUNT=" ")
extra=""
[ -n "${CA_BUNDLE:-}" ] && extra=", ca-bundle"
[ -n "$extra" ] && DEPLOY_ENV+=(EXTRA_SECRETS="$extra")
[ -n "${AUDIT_WEBHOOK_URL:-}" ] && DEPLOY_ENV+=(AUDIT_WEBHOOK_URL="$AUDIT_WEBHOOK_URL" AUTHZ_EXTRA_SECRETS=", audit-webhook-secret")
# Without Redis replicas share nothing (sessions, caches, leases): one of each.
ONE_REPLICA=()
[ "${REDIS:-}" = 1 ] || ONE_REPLICA=(--label com.openfaas.scale.min=1)
if [ "${SKIP_BUILD:-}" = 1 ]; then
  step "deploy the functions (images already in ${REGISTRY:-the registry}: SKIP_BUILD=1)" \
    "check that the images exist and the cluster can pull them (faas-cli describe NAME --gateway $GATEWAY; kubectl -n openfaas-fn get pods)"
  run env "${DEPLOY_ENV[@]}" faas-cli deploy -f stack.yml --gateway "$GATEWAY" "${ONE_REPLICA[@]}"
else
  step "build, push to $REGISTRY and deploy the functions (faas-cli up)" \
    "docker must run and be logged in to $REGISTRY (docker login); the cluster must be able to pull from it (an imagePullSecret on openfaas-fn's default service account for a private registry)"
  run env "${DEPLOY_ENV[@]}" faas-cli up -f stack.yml --gateway "$GATEWAY" "${ONE_REPLICA[@]}"
fi
FIX="the function is not ready: kubectl -n openfaas-fn describe deploy NAME and kubectl -n openfaas-fn logs deploy/NAME say why"
for fn in iam-discovery iam-token iam-authz iam-rotate; do
  if [ "$DRY" = 1 ]; then
    check "Status: +Ready" faas-cli describe "$fn" --gateway "$GATEWAY"
    continue
  fi
  for _ in $(seq 1 "${READY_WAIT:-60}"); do
    faas-cli describe "$fn" --gateway "$GATEWAY" 2>/dev/null | grep -Eq "Status: +Ready" && break
    sleep 2
  done
  check "Status: +Ready" faas-cli describe "$fn" --gateway "$GATEWAY"
done
step "the bundle answers" "kubectl -n openfaas-fn logs deploy/iam-discovery says why"
check '"issuer"' curl -fsS "$GATEWAY/function/iam-discovery/.well-known/openid-configuration"

echo
echo "openfaas-iam is installed. People and CI now sign in and use the proxy:"
echo "  $OPENFAAS_IAM auth --gateway https://$AUTHZ_HOST --authority <your IdP> --client-id <client>"
echo "  faas-cli list --gateway https://$AUTHZ_HOST"
[ -n "${SIGNIN_HOST:-}" ] && echo "  the sign-in page: https://$SIGNIN_HOST (register https://$SIGNIN_HOST/callback at the IdP)"
exit 0
