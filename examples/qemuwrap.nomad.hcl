# A Nomad job running one qemuwrap guest per allocation with the raw_exec driver (the
# guest's XML is rendered from a template).
#
# raw_exec is off by default; enable it in the client's configuration:
#   plugin "raw_exec" { config { enabled = true } }
# and put qemuwrap where `command` says: ln -sf "$PWD/.venv/bin/qemuwrap" /usr/local/bin/
#
# A guest that powers off must stay off: a "service" job would restart it whatever its
# exit status, so this is a "batch" job, whose task is complete when it exits 0 (the
# guest powered off, or was saved). The restart and reschedule policies below only
# apply to failures: exit 1 (the guest could not start), 3 (QEMU crashed or the guest
# panicked) and 4 (forced off) are failures to Nomad.
#
# On stop Nomad sends SIGTERM; qemuwrap asks the guest to power off and forces it after
# --shutdown-timeout, which must be shorter than kill_timeout. kill_timeout is capped
# by the client's max_kill_timeout (30 s unless the client configuration raises it),
# so: 20 s for the guest, 25 s before Nomad kills the supervisor.
job "qemuwrap-demo" {
  datacenters = ["dc1"]
  type        = "batch"

  group "guest" {
    count = 1

    restart {
      attempts = 2
      interval = "10m"
      delay    = "15s"
      mode     = "fail"
    }

    reschedule {
      attempts  = 1
      interval  = "1h"
      unlimited = false
    }

    task "demo" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/qemuwrap"
        args    = ["run", "--shutdown-timeout", "20", "--state-dir", "${NOMAD_TASK_DIR}/state",
                   "${NOMAD_TASK_DIR}/demo.xml"]
      }

      # The definition: a copy of examples/demo.xml. <genid/> (and a missing uuid or
      # MAC) is filled in on the first start and kept in the task directory for the
      # allocation's life.
      template {
        destination = "local/demo.xml"
        data        = <<EOT
<domain type='qemu'>
  <name>demo-{{ env "NOMAD_ALLOC_INDEX" }}</name>
  <genid/>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/var/tmp/qemuwrap-demo/vmlinuz</kernel>
    <initrd>/var/tmp/qemuwrap-demo/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOT
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "25s"

      resources {
        cpu    = 1000
        memory = 400
      }
    }
  }
}
