import sys, numpy as np
from PIL import Image
from collections import Counter
from lasro.rewards.shapes_detector import ShapesDetector, detect_objects, match_score
from lasro.rewards.shapes_fidelity import ShapesFidelity, pixel_classes, PALETTE, NAMES
from lasro.shapes import parse_prompt

def cont_purity(rgb, prompt, sigma=30.0, background=230.0):
    rgb = rgb.astype(np.float64); drawn = rgb.min(-1) < background
    if drawn.sum() < 20: return 0.0
    white = np.full(3, 255.0); direction = PALETTE - white
    alpha = np.clip(((rgb[..., None, :] - white) * direction).sum(-1) / (direction ** 2).sum(-1), 0, 1)
    res = np.linalg.norm(rgb[..., None, :] - (white + alpha[..., None] * direction), axis=-1)
    asked = sorted({NAMES.index(c) for c, _ in parse_prompt(prompt)})
    r = res[..., asked].min(-1)[drawn]
    return float(np.exp(-(r / sigma) ** 2).mean())

def scores(ims, prompts):
    pil = [Image.fromarray(a) for a in ims]; md = [{}] * len(pil)
    d, dinfo = ShapesDetector()(pil, prompts, md)
    f, finfo = ShapesFidelity()(pil, prompts, md)
    f40, _ = ShapesFidelity(tolerance=40)(pil, prompts, md)
    cp = np.array([cont_purity(a, p) for a, p in zip(ims, prompts)])
    out = {"det": d, "exact": dinfo["exact_match"], "fid": f, "fid40": f40, "mix": 0.5 * d + 0.5 * f,
           "prod": d * f, "cpur": cp, "det*cpur": d * cp, "mix_cp": 0.5*d+0.5*cp,
           "palette": finfo["palette_share"], "ghost": finfo["ghost_share"], "cover": finfo["colour_coverage"]}
    return out

if __name__ == "__main__":
    a = np.load(sys.argv[1]); prompts = list(a["prompts"])
    b = np.load(sys.argv[2]) if len(sys.argv) > 2 else None
    for k in ("k2", "k1"):
        sa = scores(a[k], prompts)
        sb = scores(b[k], prompts) if b is not None else None
        print(k)
        for n, v in sa.items():
            line = f"  {n:10s} base {v.mean():.3f} sd {v.std():.3f}"
            if sb is not None:
                diff = sb[n] - v
                line += f"  tuned {sb[n].mean():.3f}  gain {diff.mean():+.3f} (se {diff.std()/np.sqrt(len(diff)):.3f}, t {diff.mean()/(diff.std()/np.sqrt(len(diff))+1e-9):.1f})"
            print(line)
