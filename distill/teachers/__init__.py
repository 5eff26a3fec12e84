"""Audio-driven talking-video teachers (distill/teachers/base.py has the interface and the registry)."""
from distill.teachers.base import Teacher, make_teacher, register, teacher_names

__all__ = ["Teacher", "make_teacher", "register", "teacher_names"]
