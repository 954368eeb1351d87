"""Textured triangle meshes: the model, its .glb/.obj files, extraction from fields and splats,
UV textures baked from a teacher's renders."""
from fieldkit.mesh.files import MESH_SUFFIXES, is_mesh_file, load_mesh, save_mesh
from fieldkit.mesh.model import Mesh

__all__ = ["MESH_SUFFIXES", "Mesh", "is_mesh_file", "load_mesh", "save_mesh"]
