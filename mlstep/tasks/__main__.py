"""``python -m mlstep.tasks {bert,gpt,realtext}``: rebuild a course model (see :mod:`mlstep.tasks.course`)."""

from mlstep.tasks.course import main

main()
