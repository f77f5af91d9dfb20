#!/usr/bin/env bash
# Writes the secret files compose.yaml reads, once (an existing file is kept):
#   deploy/secrets/db_password              PostgreSQL's password for the user shelf
#   deploy/secrets/api_token                a token for the HTTP API (role reviewer): send it as
#                                           Authorization: Bearer <token>
#   deploy/secrets/dashboard_secrets.toml   the dashboard's Streamlit secrets: put an [auth] section here for
#                                           sign-in (README, "Sign-in and roles"); empty, sign-in is off
#   deploy/secrets/ray_token                the Ray cluster's token (profile ray: every node and driver)
# The folder is readable by its owner only; the files are world-readable inside it, because the containers read them
# as their own users (a bind-mounted secret keeps the host file's owner and mode).
# Usage: deploy/make-secrets.sh [FOLDER]     (default: deploy/secrets beside this script)
set -euo pipefail
folder=${1:-"$(cd "$(dirname "$0")" && pwd)/secrets"}
mkdir -p "$folder"
chmod 700 "$folder"
random() { python3 -c "import secrets; print($1)"; }
write() {  # write NAME CONTENT: only if the file is not there yet
  if [ -e "$folder/$1" ]; then echo "kept    $folder/$1"; return; fi
  (umask 022; printf '%s\n' "$2" > "$folder/$1")
  echo "written $folder/$1"
}
write db_password "$(random 'secrets.token_urlsafe(24)')"
write api_token "$(random '"shelf_" + secrets.token_urlsafe(32)')"
write ray_token "$(random 'secrets.token_hex(32)')"
write dashboard_secrets.toml "# Streamlit secrets for the dashboard. For sign-in add an [auth] section (README, Sign-in and roles)."
