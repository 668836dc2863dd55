"""OpenGL textures for the frames the panels show: allocated once per name and size, refreshed in place with
``glTexSubImage2D`` (no texture is created per frame, so memory stays flat). Main thread only."""

from __future__ import annotations

import numpy as np
import OpenGL.GL as gl
from imgui_bundle import imgui

from explorer.profiler import FrameClock


class Texture:
    """An RGB texture of fixed size, refreshed with :meth:`update` when its content version changes.

    Args:
        width, height: size in pixels.
        smooth: linear filtering when magnified (nearest keeps the pixels of a 96x96 frame crisp).
    """

    def __init__(self, width: int, height: int, smooth: bool = False) -> None:
        self.width, self.height = width, height
        self.version: object = None
        self.id = int(gl.glGenTextures(1))
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        mag = gl.GL_LINEAR if smooth else gl.GL_NEAREST
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, gl.GL_LINEAR)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, mag)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_S, gl.GL_CLAMP_TO_EDGE)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_T, gl.GL_CLAMP_TO_EDGE)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGB8, width, height, 0, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, None)
        self.ref = imgui.ImTextureRef(self.id)

    def update(self, image: np.ndarray, version: object = None) -> None:
        """Upload ``image`` uint8 (height, width, 3) unless ``version`` equals the one already shown."""
        if version is not None and version == self.version:
            return
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        gl.glTexSubImage2D(
            gl.GL_TEXTURE_2D, 0, 0, 0, self.width, self.height, gl.GL_RGB, gl.GL_UNSIGNED_BYTE,
            np.ascontiguousarray(image, dtype=np.uint8),
        )  # fmt: skip
        self.version = version

    def delete(self) -> None:
        gl.glDeleteTextures([self.id])


class TextureBank:
    """Textures by name; a name asked for at a new size gets its texture replaced (rare: a model change)."""

    def __init__(self, clock: FrameClock | None = None) -> None:
        self._textures: dict[str, Texture] = {}
        self.clock = clock or FrameClock()
        self.uploads = 0
        """Images uploaded so far (a picture whose version did not change is not)."""

    def get(self, name: str, image: np.ndarray, version: object = None, smooth: bool = False) -> Texture:
        """The texture ``name`` holding ``image`` (uint8 (H, W, 3)), uploaded if ``version`` changed."""
        h, w = image.shape[:2]
        tex = self._textures.get(name)
        if tex is None or (tex.width, tex.height) != (w, h):
            if tex is not None:
                tex.delete()
            tex = self._textures[name] = Texture(w, h, smooth)
        if version is None or version != tex.version:
            with self.clock.stage("upload"):
                tex.update(image, version)
            self.uploads += 1
        return tex

    def clear(self) -> None:
        """Delete every texture (before the GL context goes away)."""
        for tex in self._textures.values():
            tex.delete()
        self._textures.clear()
