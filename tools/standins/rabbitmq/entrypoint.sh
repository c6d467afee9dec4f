#!/bin/sh
# Write the default user and listeners into conf.d (the official image does so at build
# time and reads the same variables), then run the node as rabbitmq.
set -o errexit -o nounset
defaults=/etc/rabbitmq/conf.d/10-defaults.conf
{
  echo "loopback_users.guest = false"
  echo "listeners.tcp.default = 5672"
  echo "management.tcp.port = 15672"
  if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then echo "default_user = $RABBITMQ_DEFAULT_USER"; fi
  if [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then echo "default_pass = $RABBITMQ_DEFAULT_PASS"; fi
} > "$defaults"
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
chown rabbitmq:rabbitmq "$defaults"
if [ "${1:-}" = rabbitmq-server ]; then
  shift
  exec setpriv --reuid rabbitmq --regid rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
