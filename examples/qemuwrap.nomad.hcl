# A Nomad job running one qemuwrap guest per allocation with the raw_exec driver
# (the guest's XML is rendered from a template). Nomad sends SIGTERM on stop; qemuwrap
# asks the guest to power off and forces it after --shutdown-timeout, which must be
# shorter than kill_timeout. The exit status tells Nomad how the guest ended
# (0 powered off, 1 failed to start, 3 crashed, 4 forced off).
job "qemuwrap-demo" {
  datacenters = ["dc1"]
  type        = "service"

  group "guest" {
    count = 1

    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "fail"
    }

    task "demo" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/qemuwrap"
        args    = ["run", "--shutdown-timeout", "30", "--state-dir", "${NOMAD_TASK_DIR}/state",
                   "${NOMAD_TASK_DIR}/demo.xml"]
      }

      # The definition: a copy of examples/demo.xml. <genid/> is filled in on the first
      # start and kept in the task directory for the allocation's life.
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
      kill_timeout = "45s"

      resources {
        cpu    = 1000
        memory = 400
      }
    }
  }
}
