# notify's shared code, sourced by its commands and triggers (POSIX sh).
#
# State, under $BERTH_PLUGIN_DATA (kept when the plugin is upgraded):
#   urls/APP   the app's URL, one line
#   last/APP   the last delivery: time, event, version and outcome, one line

NOTIFY_CONNECT_TIMEOUT=5
NOTIFY_MAX_TIME=10

# Prints " !     MESSAGE" on stderr and exits with $2 (1 unless given).
notify_fail() {
  printf ' !     %s\n' "$1" >&2
  exit "${2:-1}"
}

[ -n "${BERTH_PLUGIN_DATA-}" ] && [ -n "${BERTH_ROOT-}" ] || notify_fail "notify runs under berth (BERTH_PLUGIN_DATA and BERTH_ROOT are not set)"
notify_data=$BERTH_PLUGIN_DATA

# True if $1 is a name berth accepts for an app (validate::app_name): it is also a safe
# file name under urls/ and last/.
notify_is_app_name() {
  case $1 in
    '' | *[!a-z0-9.-]* | [!a-z0-9]* | *..*) return 1 ;;
  esac
  [ "${#1}" -le 63 ]
}

# Refuses anything but the name of an existing app.
notify_require_app() {
  [ -n "${1-}" ] || notify_fail "Please specify an app to run the command on" 2
  notify_is_app_name "$1" || notify_fail "Invalid app name \"$1\""
  [ -f "$BERTH_ROOT/apps/$1/app.toml" ] || notify_fail "App $1 does not exist"
}

# True if $1 is an http(s) URL with a host, of URL characters only (RFC 3986: no spaces,
# quotes, backslashes or control characters), at most 2048 bytes.
notify_is_url() {
  case $1 in
    http://?* | https://?*) ;;
    *) return 1 ;;
  esac
  case ${1#*://} in
    [/?#@:]*) return 1 ;;
  esac
  case $1 in
    *[!]A-Za-z0-9._~:/?#[@!\$\&\'\(\)*+,\;=%-]*) return 1 ;;
  esac
  [ "${#1}" -le 2048 ]
}

# The host part of a URL (what is shown of it: its path may hold a secret token).
notify_host() {
  host=${1#*://}
  host=${host%%[/?#]*}
  printf '%s\n' "${host##*@}"
}

# $1 as a JSON string, quotes included: quotes, backslashes and control characters
# escaped, every other byte kept (berth hands over UTF-8).
notify_json_string() {
  printf '%s\n' "$1" | LC_ALL=C awk '
    BEGIN {
      for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
      esc[sprintf("%c", 127)] = "\\u007f"
      esc["\t"] = "\\t"; esc["\r"] = "\\r"; esc["\b"] = "\\b"; esc["\f"] = "\\f"
      esc["\""] = "\\\""; esc["\\"] = "\\\\"
      out = "\""
    }
    {
      if (NR > 1) out = out "\\n"
      n = length($0)
      for (i = 1; i <= n; i++) {
        c = substr($0, i, 1)
        out = out ((c in esc) ? esc[c] : c)
      }
    }
    END { printf "%s\"", out }'
}

# $1 as a JSON string, or null if it is empty.
notify_json_or_null() {
  if [ -n "$1" ]; then notify_json_string "$1"; else printf null; fi
}

# Writes $2 to the file $1 whole (a reader never sees half of it).
notify_write() {
  mkdir -p "${1%/*}" || return 1
  printf '%s\n' "$2" > "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
}

# notify_post APP EVENT VERSION REASON: POSTs the event to the app's URL, if it has one.
# Never fails: a failed delivery is reported on stderr and recorded in last/APP.
notify_post() {
  app=$1 event=$2 version=$3 reason=$4
  notify_is_app_name "$app" || return 0
  [ -f "$notify_data/urls/$app" ] || return 0
  IFS= read -r url < "$notify_data/urls/$app" || [ -n "${url-}" ] || return 0
  notify_is_url "$url" || {
    printf 'notify: the URL stored for %s is not an http(s) URL; set it again with notify:set\n' "$app" >&2
    return 0
  }
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  body=$(
    printf '{"app":%s,"event":%s,"version":%s,"cause":%s,"by":%s,"reason":%s,"time":%s}' \
      "$(notify_json_string "$app")" "$(notify_json_string "$event")" \
      "$(notify_json_string "$version")" "$(notify_json_or_null "${BERTH_DEPLOY_CAUSE-}")" \
      "$(notify_json_or_null "${BERTH_DEPLOYED_BY-}")" \
      "$(notify_json_or_null "$reason")" "$(notify_json_string "$now")"
  )
  host=$(notify_host "$url")
  case $version in
    '' | *[!0-9]*) shown="$event $version" ;;
    *) shown="$event v$version" ;;
  esac
  # -q: no ~/.curlrc; --globoff: [] and {} in the URL are not curl patterns; --proto: no
  # other scheme, ever; no -L: a redirect is not followed (a 3xx counts as not delivered).
  errors=$(mktemp) || return 0
  status=$(
    printf '%s' "$body" | curl -q --silent --show-error --globoff --proto =http,https \
      --connect-timeout "$NOTIFY_CONNECT_TIMEOUT" --max-time "$NOTIFY_MAX_TIME" \
      --request POST --header 'Content-Type: application/json' \
      --header 'User-Agent: berth-notify/0.1' --data-binary @- \
      --output /dev/null --write-out '%{http_code}' --url "$url" 2> "$errors"
  )
  code=$?
  why=$(tr '\n' ' ' < "$errors" | sed 's/ *$//')
  rm -f "$errors"
  case $code:$status in
    0:2??)
      printf 'notify: %s sent to %s (HTTP %s)\n' "$shown" "$host" "$status"
      notify_write "$notify_data/last/$app" "$now $shown: delivered to $host (HTTP $status)"
      ;;
    0:*)
      printf 'notify: %s not delivered to %s: HTTP %s\n' "$shown" "$host" "$status" >&2
      notify_write "$notify_data/last/$app" "$now $shown: not delivered to $host (HTTP $status)"
      ;;
    *)
      printf 'notify: %s not delivered to %s: %s\n' "$shown" "$host" "${why:-curl exited with $code}" >&2
      notify_write "$notify_data/last/$app" "$now $shown: not delivered to $host (${why:-curl exited with $code})"
      ;;
  esac
  return 0
}
