# pgbak (.rpm) %preun: on erase (not upgrade), the timer and service are stopped
# and disabled, as %systemd_preun does.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now pgbak.timer pgbak.service >/dev/null 2>&1 || :
    systemctl --no-reload disable --now pgbak-drill.timer pgbak-drill.service >/dev/null 2>&1 || :
fi
exit 0
