"""Host processes and resources a guest needs beside QEMU: NVRAM, swtpm, virtiofsd, networks."""
