"""Tasks: what a target is and how it is learned, scored, decoded and drawn (see base.py).

    classify   a class per image (classify.py)
    segment    a class per pixel (segment.py)
    detect     boxes with a class each (detect.py)
"""

from cnnlab.tasks.base import Task, get_task, register_task, task_for, task_names

__all__ = ["Task", "get_task", "register_task", "task_for", "task_names"]
