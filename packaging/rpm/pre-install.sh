# pgbak (.rpm) %pre: the pgbak system user and group exist before the files are
# laid down (/etc/pgbak/pgbak.env is group pgbak).
getent group pgbak >/dev/null || groupadd --system pgbak
getent passwd pgbak >/dev/null || useradd --system --gid pgbak --home-dir /var/lib/pgbak \
    --no-create-home --shell /sbin/nologin --comment "pgbak backups" pgbak
exit 0
