"""A step's preview colours → a small animated WebP: every latent frame, longest side ``longest`` pixels, playing
as long as the finished video will (each latent frame stands for frames / latent frames video frames)."""
from __future__ import annotations

import io
from dataclasses import dataclass

MEDIA_TYPE = "image/webp"
# Fast over small: method 0 is libwebp's quickest encoder (a 21-frame 256 px preview in tens of milliseconds);
# quality 70 keeps it a few tens of kilobytes, which the page polls every couple of seconds.
WEBP_METHOD, WEBP_QUALITY = 0, 70


@dataclass(frozen=True)
class RenderedPreview:
    data: bytes
    width: int
    height: int
    frames: int


def preview_size(video_width: int, video_height: int, longest: int) -> tuple[int, int]:
    """The video's aspect ratio with its longest side at ``longest`` (upscaled from the latents, or downscaled)."""
    scale = longest / max(video_width, video_height)
    return max(1, round(video_width * scale)), max(1, round(video_height * scale))


def render_webp(rgb, *, video_width: int, video_height: int, video_frames: int, fps: int,
                longest: int) -> RenderedPreview:
    """``rgb`` (latent frames, h, w, 3) in 0..1 on any device → an animated WebP."""
    import torch
    from PIL import Image

    width, height = preview_size(video_width, video_height, longest)
    # Resized on the latents' device (a GPU does it in microseconds); only the small uint8 frames come back.
    frames = torch.nn.functional.interpolate(rgb.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                                             align_corners=False)
    pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    pictures = [Image.fromarray(frame, "RGB") for frame in pixels]
    per_frame_ms = max(1, round(1000 * video_frames / len(pictures) / max(fps, 1)))
    buffer = io.BytesIO()
    pictures[0].save(buffer, "WEBP", save_all=True, append_images=pictures[1:], duration=per_frame_ms, loop=0,
                     quality=WEBP_QUALITY, method=WEBP_METHOD)
    return RenderedPreview(buffer.getvalue(), width, height, len(pictures))
