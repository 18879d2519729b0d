"""Procedural action clips: a two-coloured actor performs one of 12 motions in a cluttered scene.

Every clip has a textured background (colour noise plus a grating), three clutter shapes fixed in the
scene, a small plain distractor drifting in a random direction, and the actor: a disc, square, triangle,
plus or ellipse split into two colours, so that its rotation is visible whatever its shape. Shapes,
colours, sizes, speeds, positions and backgrounds are drawn independently of the class; the class only
decides how the actor moves (for "approaching" and "separating", how a pair of actors moves), so a
classifier has to read the motion. The distractor is told apart by being smaller and plain.

The camera is still by default (``CAMERA_SPEED`` = 0). ``camera_speed`` > 0 pans it over the scene in a
random direction at up to that speed per frame, so that an actor's motion on screen is its motion in the
scene minus the camera's and only the background tells them apart; networks as small as the embedded
ones stayed at 68-85% held-out accuracy on that domain, near chance on the rotations, against 98-99%
with the still camera, and a network that does not know its domain cannot show what it knows. The
camera's random draws come after all others, so a seed gives the same scene with and without it.

Rendering is vectorised over the batch: every shape is an implicit function on the pixel grid with a
one-pixel soft edge; position, rotation and scale are coordinate transforms. Image coordinates span
[-1, 1] with x to the right and y downwards, so a growing angle turns clockwise on screen. Motions are
designed for 8 frames; longer clips keep the per-frame speeds, so actors may leave the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from leaps_engine.engine.class_names import class_index

CLIP_FRAMES = 8
CLIP_SIZE = 32

# Per class, the coefficients of the actor's motion (each -1, 0 or 1): translation direction x, y (y down);
# spin (+1 clockwise); growth; bounce (falls to a floor and rises again); pair (two actors, -1 closer,
# +1 apart); orbit (circles a point, either way round). Speeds are drawn per clip.
_MOTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "moving right": (1, 0, 0, 0, 0, 0, 0),
    "moving left": (-1, 0, 0, 0, 0, 0, 0),
    "moving up": (0, -1, 0, 0, 0, 0, 0),
    "moving down": (0, 1, 0, 0, 0, 0, 0),
    "rotating clockwise": (0, 0, 1, 0, 0, 0, 0),
    "rotating counterclockwise": (0, 0, -1, 0, 0, 0, 0),
    "growing": (0, 0, 0, 1, 0, 0, 0),
    "shrinking": (0, 0, 0, -1, 0, 0, 0),
    "bouncing": (0, 0, 0, 0, 1, 0, 0),
    "approaching": (0, 0, 0, 0, 0, -1, 0),
    "separating": (0, 0, 0, 0, 0, 1, 0),
    "orbiting": (0, 0, 0, 0, 0, 0, 1),
}
CLASS_NAMES: tuple[str, ...] = tuple(_MOTIONS)

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "plus", "ellipse")

# Per-channel pixel mean/std of generated clips, rounded: the background colour is uniform in [0, 1], so
# pixels are close to uniform too (mean 0.5, std 0.289). train.py re-estimates them into training.json.
PIXEL_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
PIXEL_STD: tuple[float, float, float] = (0.29, 0.29, 0.29)

CAMERA_SPEED = 0.0  # the fastest camera pan, image coordinates per frame (the image spans 2); 0: still


@dataclass
class Sprites:
    """S shapes per clip over T frames, painted in order (later ones on top)."""

    centre: torch.Tensor  # [N, S, T, 2] (x, y) in image coordinates
    angle: torch.Tensor  # [N, S, T] radians, clockwise on screen
    scale: torch.Tensor  # [N, S, T] radius in image coordinates (the image spans 2)
    shape: torch.Tensor  # [N, S] index into SHAPES
    colours: torch.Tensor  # [N, S, 2, 3] colour of the half with local u > 0, and of the other half
    visible: torch.Tensor  # [N, S] bool


@dataclass
class Scene:
    """Everything needed to render a batch of clips at any resolution."""

    base_colour: torch.Tensor  # [N, 3] background colour
    colour_noise: torch.Tensor  # [N, 3, 4, 4] low-resolution colour noise, upsampled over the background
    grating: torch.Tensor  # [N, 4] grey grating: amplitude, cycles per image, orientation, phase
    clutter: Sprites  # shapes fixed in the scene, one frame
    movers: Sprites  # distractor, partner, actor
    camera: torch.Tensor  # [N, T, 2] the camera's offset per frame; the scene appears shifted by -camera


def _uniform(low: float, high: float, *shape: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def _contrasting_colours(base: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colours ``[N, K, 3]`` 0.22-0.33 away from ``base`` ``[N, 3]`` in every channel (cyclically)."""
    shift = _uniform(0.22, 0.33, *base.shape[:1], 1, 3, generator=generator)
    sign = torch.randint(0, 2, shift.shape, generator=generator) * 2 - 1
    return (base[:, None] + sign * shift) % 1.0


def _sample_actors(labels: torch.Tensor, frames: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Centre ``[N, 2, T, 2]``, angle and scale ``[N, 2, T]`` and visibility ``[N, 2]`` of the two actor slots.

    Slot 1 is the actor; slot 0 is its partner, visible only in the pair classes.
    """
    n = labels.shape[0]
    motion = torch.tensor(list(_MOTIONS.values()), dtype=torch.float32)[labels]  # [N, 7]
    move_x, move_y, spin, growth, bounce, pair, orbit = (motion[:, i : i + 1] for i in range(7))  # [N, 1] each
    tau = torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2  # [T] frames from the middle

    def draw(low: float, high: float) -> torch.Tensor:  # [N, 1]
        return _uniform(low, high, n, 1, generator=generator)

    middle = _uniform(-0.3, 0.3, n, 2, generator=generator) * torch.where(pair != 0, 0.5, 1.0)  # [N, 2]
    heading, speed = draw(-0.26, 0.26), draw(0.08, 0.14)  # direction jitter (+-15 degrees), per frame
    step_x = (move_x * torch.cos(heading) - move_y * torch.sin(heading)) * speed
    step_y = (move_x * torch.sin(heading) + move_y * torch.cos(heading)) * speed
    floor_time, bounce_speed = draw(-1.5, 1.5), draw(0.12, 0.2)  # the actor touches the floor at floor_time
    drop = bounce * bounce_speed * (1.75 - (tau - floor_time).abs())  # [N, T] larger y = lower
    orbit_phase, orbit_radius = draw(0.0, 2 * math.pi), draw(0.25, 0.4)
    orbit_angle = orbit_phase + (torch.randint(0, 2, (n, 1), generator=generator) * 2 - 1) * draw(0.6, 0.9) * tau
    x = middle[:, :1] + step_x * tau + orbit * orbit_radius * torch.cos(orbit_angle)  # [N, T]
    y = middle[:, 1:] + step_y * tau + drop + orbit * orbit_radius * torch.sin(orbit_angle)
    angle = draw(0.0, 2 * math.pi) + spin * draw(0.35, 0.6) * tau  # [N, T]
    size = draw(0.2, 0.3) * torch.where(pair != 0, 0.75, 1.0)
    scale = size * torch.exp(growth * torch.log(draw(1.08, 1.15)) * tau)  # [N, T]
    axis = draw(0.0, 2 * math.pi)
    half_gap = 0.45 + pair * draw(0.04, 0.06) * tau  # [N, T]
    offset = torch.stack([torch.cos(axis) * half_gap, torch.sin(axis) * half_gap], -1) * (pair != 0)[..., None]
    centre = torch.stack([x, y], -1)  # [N, T, 2]
    return {
        "centre": torch.stack([centre - offset, centre + offset], 1),
        "angle": torch.stack([angle, angle + math.pi], 1),
        "scale": torch.stack([scale, scale], 1),
        "visible": torch.cat([pair != 0, torch.ones_like(pair, dtype=torch.bool)], 1),
    }


def _plain_colours(base: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` one-coloured sprites' colours ``[N, count, 2, 3]``, each contrasting with ``base``."""
    colours = torch.cat([_contrasting_colours(base, generator) for _ in range(count)], 1)  # [N, count, 3]
    return colours[:, :, None].expand(-1, -1, 2, -1)


def _sample_clutter(base: torch.Tensor, generator: torch.Generator, count: int = 3) -> Sprites:
    """``count`` small static one-coloured shapes, as sprites of one frame."""
    n = base.shape[0]
    return Sprites(
        centre=_uniform(-0.9, 0.9, n, count, 1, 2, generator=generator),
        angle=_uniform(0.0, 2 * math.pi, n, count, 1, generator=generator),
        scale=_uniform(0.05, 0.12, n, count, 1, generator=generator),
        shape=torch.randint(0, len(SHAPES), (n, count), generator=generator),
        colours=_plain_colours(base, count, generator),
        visible=torch.ones(n, count, dtype=torch.bool),
    )


def _sample_movers(labels: torch.Tensor, frames: int, base: torch.Tensor, generator: torch.Generator) -> Sprites:
    """The moving sprites, S = 3: the distractor, the actor's partner (pair classes only), the actor."""
    n = labels.shape[0]
    tau = torch.arange(frames, dtype=torch.float32) - (frames - 1) / 2  # [T]
    start = _uniform(-0.8, 0.8, n, 1, 1, 2, generator=generator)
    heading = _uniform(0.0, 2 * math.pi, n, 1, 1, 1, generator=generator)
    speed = _uniform(0.03, 0.1, n, 1, 1, 1, generator=generator)
    drift = torch.cat([torch.cos(heading), torch.sin(heading)], -1) * speed  # [N, 1, 1, 2] per frame
    distractor_angle = _uniform(0.0, 2 * math.pi, n, 1, 1, generator=generator).expand(n, 1, frames)
    distractor_scale = _uniform(0.07, 0.12, n, 1, 1, generator=generator).expand(n, 1, frames)
    actor_colour = _contrasting_colours(base, generator)  # [N, 1, 3]
    actor_colours = torch.stack([actor_colour, (actor_colour + 0.5) % 1.0], 2).expand(n, 2, 2, 3)
    shapes = torch.randint(0, len(SHAPES), (n, 2), generator=generator)  # distractor, actors
    actors = _sample_actors(labels, frames, generator)
    return Sprites(
        centre=torch.cat([start + drift * tau[:, None], actors["centre"]], 1),
        angle=torch.cat([distractor_angle, actors["angle"]], 1),
        scale=torch.cat([distractor_scale, actors["scale"]], 1),
        shape=shapes[:, [0, 1, 1]],  # the actor and its partner share a shape
        colours=torch.cat([_plain_colours(base, 1, generator), actor_colours], 1),
        visible=torch.cat([torch.ones(n, 1, dtype=torch.bool), actors["visible"]], 1),
    )


def sample_scene(
    labels: torch.Tensor, generator: torch.Generator, frames: int = CLIP_FRAMES, camera_speed: float = CAMERA_SPEED
) -> Scene:
    """Draw the random content of one clip per label; the random draws do not depend on the labels.
    ``camera_speed``: the most the camera moves per frame, in image coordinates (the image spans 2;
    actors move 0.08-0.14 per frame); 0 keeps it still."""
    n = labels.shape[0]
    base = torch.rand(n, 3, generator=generator)
    colour_noise = (torch.rand(n, 3, 4, 4, generator=generator) - 0.5) * 0.3
    grating = torch.stack(
        [
            _uniform(0.0, 0.12, n, generator=generator),
            _uniform(1.0, 4.0, n, generator=generator),
            _uniform(0.0, math.pi, n, generator=generator),
            _uniform(0.0, 2 * math.pi, n, generator=generator),
        ],
        1,
    )
    clutter = _sample_clutter(base, generator)
    movers = _sample_movers(labels, frames, base, generator)
    camera = torch.zeros(n, frames, 2)
    if camera_speed > 0:
        tau = torch.arange(frames, dtype=torch.float32)[:, None] - (frames - 1) / 2  # [T, 1]
        heading = _uniform(0.0, 2 * math.pi, n, 1, 1, generator=generator)
        speed = _uniform(0.0, camera_speed, n, 1, 1, generator=generator)
        camera = torch.cat([torch.cos(heading), torch.sin(heading)], -1) * speed * tau  # [N, T, 2]
    return Scene(base, colour_noise, grating, clutter, movers, camera)


def _shape_distance(u: torch.Tensor, v: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance to each shape's outline, in units of its radius (< 0 inside)."""
    au, av = u.abs(), v.abs()
    distances = (
        torch.hypot(u, v) - 1.0,  # disc
        torch.maximum(au, av) - 0.8,  # square
        torch.maximum(-v, 0.866 * au + 0.5 * v) - 0.6,  # triangle
        torch.minimum(torch.maximum(au - 1.0, av - 0.35), torch.maximum(au - 0.35, av - 1.0)),  # plus
        (torch.hypot(u, 2.0 * v) - 1.0) * 0.5,  # ellipse, half as high as wide
    )
    result = distances[0]
    for index, distance in enumerate(distances[1:], start=1):
        result = torch.where(shape == index, distance, result)
    return result


def shape_coverage(sprites: Sprites, index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage in [0, 1] of sprite ``index`` and the weight of its first colour, both ``[N, T, size, size]``."""
    pixel = 2.0 / size
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * pixel - 1.0  # pixel centres
    centre = sprites.centre[:, index, :, None, None, :]  # [N, T, 1, 1, 2]
    dx, dy = grid[None, None, None, :] - centre[..., 0], grid[None, None, :, None] - centre[..., 1]
    angle = sprites.angle[:, index, :, None, None]  # [N, T, 1, 1]
    scale = sprites.scale[:, index, :, None, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    u = (cos * dx + sin * dy) / scale  # rotate by -angle into the shape's own frame, radius 1
    v = (cos * dy - sin * dx) / scale
    distance = _shape_distance(u, v, sprites.shape[:, index, None, None, None])
    visible = sprites.visible[:, index, None, None, None]
    coverage = (0.5 - distance * scale / pixel).clamp(0.0, 1.0) * visible
    first_colour = (0.5 + u * scale / pixel).clamp(0.0, 1.0)
    return coverage, first_colour


def _render_background(scene: Scene, size: int) -> torch.Tensor:
    """Background ``[N, 3, T, size, size]`` as the camera sees it: base colour, smooth colour noise
    (mirrored beyond the scene's edge) and a grey grating."""
    n, frames = scene.camera.shape[:2]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    x = grid[None, None, None, :] + scene.camera[:, :, 0, None, None]  # [N, T, 1, size] scene coordinates
    y = grid[None, None, :, None] + scene.camera[:, :, 1, None, None]  # [N, T, size, 1]
    amplitude, cycles, orientation, phase = (scene.grating[:, i, None, None, None] for i in range(4))
    along = x * torch.cos(orientation) + y * torch.sin(orientation)
    grating = amplitude * torch.sin(math.pi * cycles * along + phase)  # [N, T, size, size]
    where = torch.stack(torch.broadcast_tensors(x, y), -1).reshape(n, frames * size, size, 2)
    noise = torch.nn.functional.grid_sample(scene.colour_noise, where, mode="bilinear", padding_mode="reflection",
                                            align_corners=False).reshape(n, 3, frames, size, size)
    return (scene.base_colour[:, :, None, None, None] + noise + grating[:, None]).clamp(0.0, 1.0)


def _paint(video: torch.Tensor, sprites: Sprites, size: int) -> torch.Tensor:
    """Paint ``sprites`` in order over ``video`` ``[N, 3, T, size, size]`` (T: the sprites' frame count)."""
    for index in range(sprites.shape.shape[1]):
        coverage, first_colour = shape_coverage(sprites, index, size)  # [N, T, H, W]
        colour_a = sprites.colours[:, index, 0, :, None, None, None]  # [N, 3, 1, 1, 1]
        colour_b = sprites.colours[:, index, 1, :, None, None, None]
        colour = colour_b + first_colour[:, None] * (colour_a - colour_b)  # [N, 3, T, H, W]
        video = video + coverage[:, None] * (colour - video)
    return video


def _seen_from(sprites: Sprites, camera: torch.Tensor) -> Sprites:
    """``sprites`` on screen, per frame of ``camera`` ``[N, T, 2]``: every centre shifted by -camera."""
    return replace(sprites, centre=sprites.centre - camera[:, None])


def render_scene(scene: Scene, size: int = CLIP_SIZE) -> torch.Tensor:
    """Render clips ``[N, 3, T, size, size]`` in [0, 1]."""
    video = _paint(_render_background(scene, size), _seen_from(scene.clutter, scene.camera), size)
    return _paint(video, _seen_from(scene.movers, scene.camera), size).contiguous()


def generate_clips(
    labels: torch.Tensor, generator: torch.Generator, frames: int = CLIP_FRAMES, size: int = CLIP_SIZE,
    camera_speed: float = CAMERA_SPEED,
) -> torch.Tensor:
    """Clips ``[N, 3, frames, size, size]`` in [0, 1], one of class ``labels[i]`` each; deterministic given
    the generator's state. ``camera_speed``: see :func:`sample_scene`."""
    return render_scene(sample_scene(labels, generator, frames, camera_speed), size)


def generate_stimulus(
    label: int | str, seed: int, frames: int = CLIP_FRAMES, size: int = CLIP_SIZE, camera_speed: float = CAMERA_SPEED
) -> torch.Tensor:
    """One clip ``[3, frames, size, size]`` in [0, 1] of class ``label`` (an index, or a name of
    :data:`CLASS_NAMES`, matched by :func:`~leaps_engine.engine.class_names.class_index`), determined by
    ``seed``: a stimulus for the embedded models.

    Raises:
        ValueError: an unknown class.
    """
    index = label if isinstance(label, int) else class_index(label, CLASS_NAMES)
    if index is None or not 0 <= index < len(CLASS_NAMES):
        raise ValueError(f"unknown class {label!r}; the embedded domain's are {', '.join(CLASS_NAMES)}")
    generator = torch.Generator().manual_seed(seed)
    return generate_clips(torch.tensor([index]), generator, frames, size, camera_speed)[0]
