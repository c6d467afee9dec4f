#!/bin/sh
# Render each template with the variables set in the environment only, as the official
# image does (a `$host` of nginx's own stays as it is), then run nginx.
set -o errexit -o nounset
templates=/etc/nginx/templates
if [ -d "$templates" ]; then
  defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
  for template in "$templates"/*.template; do
    [ -e "$template" ] || continue
    target=/etc/nginx/conf.d/$(basename "$template" .template)
    envsubst "$defined" < "$template" > "$target"
    echo "nginx stand-in: rendered $template to $target"
  done
fi
exec "$@"
