"""Operations on guests, as requests to their supervisors (the one party that drives a
QEMU), or, where no supervisor lives, directly over QEMU's second monitor
(``control.sock``, which exists for exactly that) or as file work."""
