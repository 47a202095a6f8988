# pgbak (.rpm) %postun: systemd forgets removed units; on upgrade a running timer
# picks up the new unit. /var/lib/pgbak (backups) and the pgbak user stay.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart pgbak.timer pgbak-drill.timer >/dev/null 2>&1 || :
    fi
fi
exit 0
