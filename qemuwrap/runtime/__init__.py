"""What runs: the guest record, the state directory, the QMP client, the Machine (one
QEMU and its companions) and the supervisor's control socket."""
