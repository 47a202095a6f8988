# pgbak (.rpm) %post: /var/lib/pgbak for the pgbak user and /etc/pgbak readable by
# its group only, on first install (an operator's later change is kept on
# upgrade); systemd learns about the units. Nothing is enabled or started: edit
# /etc/pgbak/pgbak.env first, then `systemctl enable --now pgbak.timer`.
if [ "$1" -eq 1 ]; then
    [ -d /var/lib/pgbak ] || install -d -m 0750 -o pgbak -g pgbak /var/lib/pgbak
    chgrp pgbak /etc/pgbak && chmod 0750 /etc/pgbak
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
