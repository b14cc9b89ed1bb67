"""Tasks: what a target is and how it is learned, scored, decoded and drawn (see base.py).

    classify   a class per image (classify.py)
    segment    a class per pixel (segment.py)
"""

from cnnlab.tasks.base import Task, check_serves, get_task, register_task, task_names

__all__ = ["Task", "check_serves", "get_task", "register_task", "task_names"]
