"""Audio-driven talking-video teachers: base.py has the interface, registry.py builds them by name."""
from distill.teachers.base import Teacher
from distill.teachers.registry import make_teacher, register, teacher_names

__all__ = ["Teacher", "make_teacher", "register", "teacher_names"]
