// Gaussian-splatting renderer for the browser, in WebGL2: the avatar's rest-pose Gaussians are uploaded once,
// each frame's particle motion, decoder deltas and limb-bone rotations are applied on the GPU (vertex shader),
// and the image matches the engine's CPU rasterizer (cuda_ext/reference.py) to within rounding.
//
//   const r = new SplatRenderer(canvas);   // Error if WebGL2 is unavailable (options: see the constructor)
//   r.setAvatar(avatar);                    // rest pose (typed arrays, see AVATAR below), once; resets the frame
//   r.setFrame(frame);                      // per-frame deformation inputs (null = rest pose)
//   r.render(camera);                       // one image at camera.width x camera.height
//   r.readPixels();                         // Uint8Array(w*h*4) RGBA, rows top to bottom
//   r.stats;                                // {gaussians, facing, visible, deformMs, sortMs, drawMs, target}
//
// AVATAR (world frame = OpenCV camera axes): n Gaussians, K particles, J skin columns, B limb bones
//   means Float32Array(n*3), quats (n*4, wxyz), scales (n*3, linear), opacities (n), colors (n*3, RGB, may lie
//   outside [0, 1]), normals (n*3, 0 = unknown), skinIndex Uint16Array(n*J), skinWeight Float32Array(n*J),
//   bone Uint8Array(n) (255 = none), other Uint8Array(n) (0..B, B = torso), share Float32Array(n),
//   offset Float32Array(n*3); optional, the colour away from the photo camera (engine/render/away.py):
//   awayColors (n*3, RGB), photoEye (3, the photo camera's centre), awayDeg (2: NEAR_DEG, AWAY_DEG)
// FRAME: translation Float32Array(K*3), deltas Float32Array(K*10) | null (rotvec 3, log-scale 3, RGB 3,
//   opacity 1), bones Float32Array((B+1)*4) | null (wxyz, last row the torso)
// CAMERA: viewmat Float32Array(16) row-major world -> camera, fx, fy, cx, cy, width, height, background (grey)
//
// Per Gaussian (engine/render/away.py, engine/deform/decoder.py, engine/avatar/limbs.py, cuda_ext/reference.py):
//   w = clamp((cos(eye - mean, photoEye - mean) - cos AWAY) / (cos NEAR - cos AWAY), 0, 1) on the rest mean;
//   colour = mix(awayColor, colour, w)
//   mean'  = mean + sum_j w_j translation[j];     quat' = normalize(rotvec_quat(sum_j w_j rotvec_j) ⊗ quat)
//   scale' = scale * exp(sum_j w_j logscale_j);   colour' = colour + sum_j w_j rgb_j
//   opacity' = clamp(opacity + sum_j w_j opacity_j, 0, 1)
//   bone: q = nlerp(bones[bone], bones[other], share); mean'' = mean' + R(q) offset - offset; quat'' = q ⊗ quat'
//   then EWA projection (eps2d 0.3, Jacobian clamped at 1.3x the field of view, near plane 0.01, radius
//   ceil(3.33 sigma) per axis) and alpha = min(0.99, opacity exp(-power)), skipped below 1/255, composited
//   back to front over the background (the reference composites front to back; the same sum).
//
// The Gaussians facing away from the camera (rest normals) are culled first, and the rest sorted by the depth
// of their deformed means, on the CPU (splat_sort.js).

import { DepthSorter, deformedMeans, facingIndices } from "./splat_sort.js";

const TEX_WIDTH = 2048;          // texels per row of every data texture; texel t sits at (t % 2048, t / 2048)
const MAX_BONES = 32;            // rows of the bone-rotation uniform array (B + 1 <= MAX_BONES)
const DELTA_CHANNELS = 10;       // frame.deltas per particle
const PARTICLE_TEXELS = 4;       // per particle: translation + d_opacity, rotvec, log-scale, rgb

// ------------------------------------------------------------------------------------------------ shaders
const GLSL_COMMON = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
ivec2 texel(int t) { return ivec2(t & ${TEX_WIDTH - 1}, t >> ${Math.log2(TEX_WIDTH)}); }
`;

// Four vertices per drawn Gaussian (gl_VertexID = 4 s + corner for the s-th, back to front), the corners of its
// screen-space box, as two triangles of a static element buffer. Not instanced: SwiftShader (software GL) pays
// a fixed cost per instance, which made a frame of 100k Gaussians 8x slower there.
const SPLAT_VS = GLSL_COMMON + `
uniform sampler2D uMeanOpacity;  // texel i: rest mean xyz, opacity
uniform sampler2D uQuat;         // texel i: rest quaternion wxyz
uniform sampler2D uScaleShare;   // texel i: scale xyz, share of the second bone
uniform sampler2D uColorBone;    // texel i: colour rgb, bone + 256 * other (bone 255 = none)
uniform sampler2D uAway;         // texel i: colour rgb away from the photo camera
uniform vec3 uPhotoEye;          // the photo camera's centre (world)
uniform vec2 uAwayCos;           // cos NEAR_DEG, cos AWAY_DEG (engine/render/away.py)
uniform sampler2D uOffset;       // texel i: offset xyz of the Gaussian from its bone
uniform sampler2D uSkin;         // texel i*J + j: particle index, weight
uniform sampler2D uParticles;    // texel 4k + c: c = 0 translation xyz + d_opacity, 1 rotvec, 2 log-scale, 3 rgb
uniform highp usampler2D uOrder; // texel s: the Gaussian drawn s-th
uniform int uJ;
uniform bool uHasDeltas;
uniform bool uHasBones;
uniform vec4 uBones[${MAX_BONES}];  // wxyz per bone row
uniform mat3 uViewR;             // world -> camera rotation
uniform vec3 uViewT;             // world -> camera translation
uniform vec4 uIntrinsics;        // fx, fy, cx, cy (pixels)
uniform vec2 uSize;              // width, height (pixels)

flat out vec2 vCenter;   // projected mean, pixels (x right, y down)
flat out vec3 vConic;    // inverse 2D covariance: a, b, c
flat out vec4 vColor;    // rgb (>= 0), opacity

vec4 quatMul(vec4 p, vec4 q) {   // Hamilton product, wxyz
  return vec4(p.x * q.x - p.y * q.y - p.z * q.z - p.w * q.w,
              p.x * q.y + p.y * q.x + p.z * q.w - p.w * q.z,
              p.x * q.z - p.y * q.w + p.z * q.x + p.w * q.y,
              p.x * q.w + p.y * q.z - p.z * q.y + p.w * q.x);
}

mat3 quatMat(vec4 q) {           // rotation matrix of a wxyz quaternion (normalised here)
  q = normalize(q);
  float w = q.x, x = q.y, y = q.z, z = q.w;
  return mat3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),    // column 0
              2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),    // column 1
              2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));  // column 2
}

void cull() { gl_Position = vec4(0.0, 0.0, 2.0, 1.0); }   // outside the clip volume: nothing drawn

void main() {
  int i = int(texelFetch(uOrder, texel(gl_VertexID >> 2), 0).r);
  vec2 corner = vec2((gl_VertexID & 1) == 1 ? 1.0 : -1.0, (gl_VertexID & 2) == 2 ? 1.0 : -1.0);
  vec4 meanOpacity = texelFetch(uMeanOpacity, texel(i), 0);
  vec4 quat = texelFetch(uQuat, texel(i), 0);
  vec4 scaleShare = texelFetch(uScaleShare, texel(i), 0);
  vec4 colorBone = texelFetch(uColorBone, texel(i), 0);
  vec4 away = texelFetch(uAway, texel(i), 0);
  {  // the colour this camera sees (engine/render/away.py seen_from), judged on the rest mean
    vec3 eye = -(transpose(uViewR) * uViewT), p = meanOpacity.xyz;
    float w = clamp((dot(normalize(eye - p), normalize(uPhotoEye - p)) - uAwayCos.y) / (uAwayCos.x - uAwayCos.y),
                    0.0, 1.0);
    colorBone.rgb = mix(away.rgb, colorBone.rgb, w);
  }

  // --- skinning: blend the particles' frame data with the Gaussian's weights
  vec3 move = vec3(0.0), rotvec = vec3(0.0), logScale = vec3(0.0), rgb = vec3(0.0);
  float dOpacity = 0.0;
  for (int j = 0; j < uJ; j++) {
    vec2 s = texelFetch(uSkin, texel(i * uJ + j), 0).xy;
    int k = ${PARTICLE_TEXELS} * int(s.x);
    vec4 t0 = texelFetch(uParticles, texel(k), 0);
    move += s.y * t0.xyz;
    dOpacity += s.y * t0.w;
    if (uHasDeltas) {
      rotvec += s.y * texelFetch(uParticles, texel(k + 1), 0).xyz;
      logScale += s.y * texelFetch(uParticles, texel(k + 2), 0).xyz;
      rgb += s.y * texelFetch(uParticles, texel(k + 3), 0).xyz;
    }
  }
  vec3 mean = meanOpacity.xyz + move;
  float theta = length(rotvec);
  if (theta > 0.0) quat = normalize(quatMul(vec4(cos(0.5 * theta), rotvec * (sin(0.5 * theta) / theta)), quat));
  vec3 scale = scaleShare.xyz * exp(logScale);
  vec3 color = max(colorBone.rgb + rgb, 0.0);
  float opacity = clamp(meanOpacity.w + dOpacity, 0.0, 1.0);

  // --- limb bone: turn the offset from the bone and the orientation by the blended bone rotation
  int code = int(colorBone.a);
  int bone = code & 255;
  if (uHasBones && bone != 255) {
    vec4 p = uBones[bone], q = uBones[code >> 8];
    if (dot(p, q) < 0.0) q = -q;
    vec4 b = normalize((1.0 - scaleShare.w) * p + scaleShare.w * q);
    vec3 offset = texelFetch(uOffset, texel(i), 0).xyz;
    mean += quatMat(b) * offset - offset;
    quat = quatMul(b, quat);
  }

  // --- EWA projection (cuda_ext/reference.py fully_fused_projection)
  vec3 t = uViewR * mean + uViewT;
  if (!(t.z > 0.01 && t.z < 1e10)) { cull(); return; }
  mat3 M = quatMat(quat) * mat3(scale.x, 0.0, 0.0, 0.0, scale.y, 0.0, 0.0, 0.0, scale.z);
  mat3 cov = uViewR * (M * transpose(M)) * transpose(uViewR);
  float fx = uIntrinsics.x, fy = uIntrinsics.y, cx = uIntrinsics.z, cy = uIntrinsics.w;
  vec2 tanFov = 0.5 * uSize / vec2(fx, fy);
  float txc = t.z * clamp(t.x / t.z, -(cx / fx + 0.3 * tanFov.x), (uSize.x - cx) / fx + 0.3 * tanFov.x);
  float tyc = t.z * clamp(t.y / t.z, -(cy / fy + 0.3 * tanFov.y), (uSize.y - cy) / fy + 0.3 * tanFov.y);
  vec3 j0 = vec3(fx / t.z, 0.0, -fx * txc / (t.z * t.z));
  vec3 j1 = vec3(0.0, fy / t.z, -fy * tyc / (t.z * t.z));
  vec3 cj0 = cov * j0, cj1 = cov * j1;
  float a = dot(j0, cj0) + 0.3, b = 0.5 * (dot(j0, cj1) + dot(j1, cj0)), c = dot(j1, cj1) + 0.3;
  float det = a * c - b * b;
  if (!(det > 0.0)) { cull(); return; }
  vec2 center = vec2(fx * t.x / t.z + cx, fy * t.y / t.z + cy);
  vec2 radius = ceil(3.33 * sqrt(max(vec2(a, c), 0.0)));
  if (any(lessThanEqual(center + radius, vec2(0.0))) || any(greaterThanEqual(center - radius, uSize))) {
    cull(); return;
  }

  // --- the box of +-radius around the centre: beyond it alpha < 1/255 for any opacity <= 1
  vec2 pixel = center + corner * radius;
  gl_Position = vec4(2.0 * pixel.x / uSize.x - 1.0, 1.0 - 2.0 * pixel.y / uSize.y, 0.0, 1.0);
  vCenter = center;
  vConic = vec3(c, -b, a) / det;
  vColor = vec4(color, opacity);
}
`;

const SPLAT_FS = GLSL_COMMON + `
uniform vec2 uSize;
flat in vec2 vCenter;
flat in vec3 vConic;
flat in vec4 vColor;
out vec4 outColor;

void main() {
  // pixel centre in image coordinates (y down): the image's top row is the framebuffer's last
  vec2 d = vCenter - vec2(gl_FragCoord.x, uSize.y - gl_FragCoord.y);
  float power = 0.5 * (vConic.x * d.x * d.x + vConic.z * d.y * d.y) + vConic.y * d.x * d.y;
  if (power < 0.0) discard;
  float alpha = min(0.99, vColor.a * exp(-power));
  if (alpha < 1.0 / 255.0) discard;
  outColor = vec4(vColor.rgb, alpha);
}
`;

// Accumulated image -> canvas: clamped to [0, 1] and quantised as the engine does (trunc(255 v + 0.5)).
const PRESENT_VS = GLSL_COMMON + `
void main() {   // one triangle covering the viewport
  vec2 p = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
  gl_Position = vec4(p, 0.0, 1.0);
}
`;
const PRESENT_FS = GLSL_COMMON + `
uniform sampler2D uImage;
out vec4 outColor;
void main() {
  vec3 rgb = texelFetch(uImage, ivec2(gl_FragCoord.xy), 0).rgb;
  outColor = vec4(floor(clamp(rgb, 0.0, 1.0) * 255.0 + 0.5) / 255.0, 1.0);
}
`;

// ------------------------------------------------------------------------------------------- GL helpers
function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`SplatRenderer: shader compile failed: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function program(gl, vs, fs) {
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl, gl.VERTEX_SHADER, vs));
  gl.attachShader(p, compile(gl, gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) {
    throw new Error(`SplatRenderer: program link failed: ${gl.getProgramInfoLog(p)}`);
  }
  const uniforms = {};
  for (let u = 0; u < gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS); u++) {
    const name = gl.getActiveUniform(p, u).name.replace(/\[0\]$/, "");
    uniforms[name] = gl.getUniformLocation(p, name);
  }
  return { program: p, uniforms };
}

// A float data texture holding `texels` texels of `channels` (2: RG32F, 4: RGBA32F) floats each, rows of
// TEX_WIDTH; `fill(data)` writes them into the zero-padded Float32Array it is given.
function dataTexture(gl, texture, texels, channels, fill) {
  const rows = Math.max(1, Math.ceil(texels / TEX_WIDTH));
  const data = new Float32Array(TEX_WIDTH * rows * channels);
  fill(data);
  const [internal, format] = channels === 4 ? [gl.RGBA32F, gl.RGBA] : [gl.RG32F, gl.RG];
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.texImage2D(gl.TEXTURE_2D, 0, internal, TEX_WIDTH, rows, 0, format, gl.FLOAT, data);
  return texture;
}

// Interleave per-Gaussian arrays into RGBA texels: parts = [[array, components], ...] adding up to 4
// components (a number instead of an array: a function i -> value).
function packTexels(n, parts) {
  return (data) => {
    for (let i = 0; i < n; i++) {
      let c = 4 * i;
      for (const [src, k] of parts) {
        if (typeof src === "function") data[c++] = src(i);
        else for (let e = 0; e < k; e++) data[c++] = src[k * i + e];
      }
    }
  };
}

function checkLength(name, array, want, type) {
  if (!(array instanceof type)) throw new Error(`SplatRenderer: avatar.${name} must be a ${type.name}`);
  if (array.length !== want) {
    throw new Error(`SplatRenderer: avatar.${name} has ${array.length} values, expected ${want}`);
  }
}

// ---------------------------------------------------------------------------------------------- renderer
export class SplatRenderer {
  // options.target: "RGBA32F" (default), "RGBA16F" or "RGBA8", the most precise accumulation target wanted
  // (the best the browser supports up to it is used; lower ones are for tests of the fallbacks)
  constructor(canvas, options = {}) {
    const gl = canvas.getContext("webgl2", {
      alpha: false, antialias: false, depth: false, stencil: false, premultipliedAlpha: false,
      preserveDrawingBuffer: false,
    });
    if (!gl) {
      throw new Error("SplatRenderer: WebGL2 is unavailable in this browser (no 'webgl2' context); enable " +
        "hardware acceleration, or software GL (Chromium: --enable-unsafe-swiftshader)");
    }
    this.canvas = canvas;
    this.gl = gl;
    this.splat = program(gl, SPLAT_VS, SPLAT_FS);
    this.present = program(gl, PRESENT_VS, PRESENT_FS);
    this.targetFormat = this._pickTarget(options.target || "RGBA32F");
    this.textures = {};
    for (const name of ["uMeanOpacity", "uQuat", "uScaleShare", "uColorBone", "uAway", "uOffset", "uSkin",
      "uParticles", "uOrder"]) {
      this.textures[name] = gl.createTexture();
    }
    this.vao = gl.createVertexArray();
    this.presentVao = gl.createVertexArray();
    this.sorter = new DepthSorter();
    this.avatar = null;
    this.frame = null;
    this.frameVersion = 0;          // bumped by setFrame; the sort is redone when it or the camera changes
    this.sorted = { frameVersion: -1, count: 0 };
    this.facing = { viewmat: null, indices: null };
    this.target = { width: 0, height: 0, texture: null, framebuffer: null };
    this.stats = { gaussians: 0, facing: 0, visible: 0, deformMs: 0, sortMs: 0, drawMs: 0,
                   target: this.targetFormat.name };
  }

  // -- accumulation target: float where the browser can render and blend floats (less rounding per layer)
  _pickTarget(wanted) {
    const gl = this.gl;
    const floatTarget = wanted !== "RGBA8" && gl.getExtension("EXT_color_buffer_float");
    const floatBlend = wanted === "RGBA32F" && gl.getExtension("EXT_float_blend");
    if (floatTarget && floatBlend) return { name: "RGBA32F", internal: gl.RGBA32F };
    if (floatTarget) return { name: "RGBA16F", internal: gl.RGBA16F };
    if (wanted !== "RGBA8") {
      console.info("SplatRenderer: no EXT_color_buffer_float; blending in RGBA8 (colours round at each layer)");
    }
    return { name: "RGBA8", internal: gl.RGBA8 };
  }

  _resizeTarget(width, height) {
    const gl = this.gl, t = this.target;
    if (t.width === width && t.height === height) return;
    if (t.texture) { gl.deleteTexture(t.texture); gl.deleteFramebuffer(t.framebuffer); }
    for (;;) {
      t.texture = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, t.texture);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      gl.texStorage2D(gl.TEXTURE_2D, 1, this.targetFormat.internal, width, height);
      t.framebuffer = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, t.framebuffer);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t.texture, 0);
      if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE) break;
      if (this.targetFormat.name === "RGBA8") throw new Error("SplatRenderer: no usable colour target");
      console.info(`SplatRenderer: ${this.targetFormat.name} target incomplete; falling back to RGBA8`);
      gl.deleteTexture(t.texture); gl.deleteFramebuffer(t.framebuffer);
      this.targetFormat = { name: "RGBA8", internal: gl.RGBA8 };
      this.stats.target = "RGBA8";
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    t.width = width; t.height = height;
  }

  // -- geometry: two triangles (0 1 2, 2 1 3) over the four vertices of each drawn Gaussian, for n Gaussians
  _makeQuads(n) {
    const gl = this.gl, quads = new Uint32Array(6 * n);
    for (let s = 0; s < n; s++) quads.set([4 * s, 4 * s + 1, 4 * s + 2, 4 * s + 2, 4 * s + 1, 4 * s + 3], 6 * s);
    if (this.quadBuffer) gl.deleteBuffer(this.quadBuffer);
    this.quadBuffer = gl.createBuffer();
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.quadBuffer);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, quads, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
  }

  // -- the draw order into its texture (R32UI, rows of TEX_WIDTH)
  _uploadOrder(order, count) {
    const gl = this.gl, rows = Math.max(1, Math.ceil(count / TEX_WIDTH));
    if (!this.orderTexels || this.orderTexels.length < rows * TEX_WIDTH) {
      this.orderTexels = new Uint32Array(rows * TEX_WIDTH);
    }
    this.orderTexels.set(order.subarray(0, count));
    gl.bindTexture(gl.TEXTURE_2D, this.textures.uOrder);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32UI, TEX_WIDTH, rows, 0, gl.RED_INTEGER, gl.UNSIGNED_INT,
                  this.orderTexels.subarray(0, rows * TEX_WIDTH));
  }

  // -- avatar: the rest-pose Gaussians into data textures (once per avatar)
  setAvatar(avatar) {
    const { n, K, J, B } = avatar;
    if (!(n >= 0 && K >= 1 && J >= 1 && B >= 0)) throw new Error("SplatRenderer: avatar needs n, K, J >= 1 and B");
    if (B + 1 > MAX_BONES) throw new Error(`SplatRenderer: at most ${MAX_BONES - 1} bones, got ${B}`);
    for (const [name, per, type] of [["means", 3, Float32Array], ["quats", 4, Float32Array],
      ["scales", 3, Float32Array], ["opacities", 1, Float32Array], ["colors", 3, Float32Array],
      ["normals", 3, Float32Array], ["skinIndex", J, Uint16Array], ["skinWeight", J, Float32Array],
      ["bone", 1, Uint8Array], ["other", 1, Uint8Array], ["share", 1, Float32Array],
      ["offset", 3, Float32Array]]) {
      checkLength(name, avatar[name], n * per, type);
    }
    const gl = this.gl, tx = this.textures;
    dataTexture(gl, tx.uMeanOpacity, n, 4, packTexels(n, [[avatar.means, 3], [avatar.opacities, 1]]));
    dataTexture(gl, tx.uQuat, n, 4, packTexels(n, [[avatar.quats, 4]]));
    dataTexture(gl, tx.uScaleShare, n, 4, packTexels(n, [[avatar.scales, 3], [avatar.share, 1]]));
    const code = (i) => avatar.bone[i] + 256 * avatar.other[i];
    dataTexture(gl, tx.uColorBone, n, 4, packTexels(n, [[avatar.colors, 3], [code, 1]]));
    const awayColors = avatar.awayColors || avatar.colors;        // none: the same colour from everywhere
    if (avatar.awayColors) {
      checkLength("awayColors", avatar.awayColors, n * 3, Float32Array);
      checkLength("photoEye", avatar.photoEye, 3, Float32Array);
      checkLength("awayDeg", avatar.awayDeg, 2, Float32Array);
      if (!(avatar.awayDeg[1] > avatar.awayDeg[0])) throw new Error("SplatRenderer: avatar.awayDeg needs near < away");
    }
    dataTexture(gl, tx.uAway, n, 4, packTexels(n, [[awayColors, 3], [() => 0, 1]]));
    this.photoEye = avatar.awayColors ? Array.from(avatar.photoEye) : [0, 0, 0];
    this.awayCos = avatar.awayColors ? Array.from(avatar.awayDeg, (d) => Math.cos((d * Math.PI) / 180)) : [1, 0];
    dataTexture(gl, tx.uOffset, n, 4, packTexels(n, [[avatar.offset, 3], [() => 0, 1]]));
    dataTexture(gl, tx.uSkin, n * J, 2, (data) => {
      for (let t = 0; t < n * J; t++) { data[2 * t] = avatar.skinIndex[t]; data[2 * t + 1] = avatar.skinWeight[t]; }
    });
    this.avatar = avatar;
    this.means = new Float32Array(n * 3);
    this._makeQuads(n);
    this.facing = { viewmat: null, indices: null };
    this.stats.gaussians = n;
    this.setFrame(null);                             // a new avatar starts in its rest pose
  }

  // -- frame: per-particle data into a small texture, bone rotations into uniforms
  setFrame(frame) {
    this.frame = frame || null;
    this.frameVersion++;
    const a = this.avatar;
    if (!a) return;
    const f = this.frame, K = a.K;
    if (f && f.translation.length !== K * 3) throw new Error(`SplatRenderer: frame.translation needs ${K * 3} values`);
    if (f && f.deltas && f.deltas.length !== K * DELTA_CHANNELS) {
      throw new Error(`SplatRenderer: frame.deltas needs ${K * DELTA_CHANNELS} values`);
    }
    if (f && f.bones && f.bones.length !== (a.B + 1) * 4) {
      throw new Error(`SplatRenderer: frame.bones needs ${(a.B + 1) * 4} values`);
    }
    dataTexture(this.gl, this.textures.uParticles, K * PARTICLE_TEXELS, 4, (data) => {
      if (!f) return;
      for (let k = 0; k < K; k++) {
        const o = 16 * k, d = f.deltas, e = DELTA_CHANNELS * k;
        data[o] = f.translation[3 * k]; data[o + 1] = f.translation[3 * k + 1]; data[o + 2] = f.translation[3 * k + 2];
        if (!d) continue;
        data[o + 3] = d[e + 9];                                                          // d_opacity
        for (let c = 0; c < 3; c++) {
          data[o + 4 + c] = d[e + c];                                                    // rotvec
          data[o + 8 + c] = d[e + 3 + c];                                                // log-scale
          data[o + 12 + c] = d[e + 6 + c];                                               // rgb
        }
      }
    });
    this.bones = new Float32Array(MAX_BONES * 4);
    for (let b = 0; b < MAX_BONES; b++) this.bones[4 * b] = 1;
    if (f && f.bones) this.bones.set(f.bones);
  }

  // -- CPU side: facing cull on camera change, deformed means and depth sort on frame or camera change
  _order(viewmat) {
    const same = (m) => m && m.every((v, k) => v === viewmat[k]);
    const cameraMoved = !same(this.facing.viewmat);
    if (cameraMoved) {
      this.facing = { viewmat: Array.from(viewmat), indices: facingIndices(this.avatar, viewmat) };
    }
    if (!cameraMoved && this.sorted.frameVersion === this.frameVersion) return this.sorted.count;
    const t0 = performance.now();
    deformedMeans(this.avatar, this.frame, this.means, this.facing.indices);
    const t1 = performance.now();
    const count = this.sorter.sort(this.means, this.facing.indices, viewmat);
    this._uploadOrder(this.sorter.order, count);
    this.sorted = { frameVersion: this.frameVersion, count };
    Object.assign(this.stats, { facing: this.facing.indices.length, visible: count, deformMs: t1 - t0,
                                sortMs: performance.now() - t1 });
    return count;
  }

  render(camera) {
    if (!this.avatar) throw new Error("SplatRenderer: setAvatar first");
    const { viewmat: v, fx, fy, cx, cy, width, height } = camera;
    const bg = camera.background ?? 1.0;
    const gl = this.gl, canvas = this.canvas;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    this._resizeTarget(width, height);
    const count = this._order(v);
    const t0 = performance.now();

    // splats, back to front, into the accumulation target cleared to the background (alpha = 1 - T)
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.target.framebuffer);
    gl.viewport(0, 0, width, height);
    gl.clearColor(bg, bg, bg, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (count > 0) {
      const { program: p, uniforms: u } = this.splat;
      gl.useProgram(p);
      let unit = 0;
      for (const [name, texture] of Object.entries(this.textures)) {
        gl.activeTexture(gl.TEXTURE0 + unit);
        gl.bindTexture(gl.TEXTURE_2D, texture);
        gl.uniform1i(u[name], unit++);
      }
      const f = this.frame;
      gl.uniform1i(u.uJ, this.avatar.J);
      gl.uniform1i(u.uHasDeltas, f && f.deltas ? 1 : 0);
      gl.uniform1i(u.uHasBones, f && f.bones ? 1 : 0);
      gl.uniform4fv(u.uBones, this.bones);
      gl.uniformMatrix3fv(u.uViewR, false, [v[0], v[4], v[8], v[1], v[5], v[9], v[2], v[6], v[10]]);
      gl.uniform3f(u.uViewT, v[3], v[7], v[11]);
      gl.uniform4f(u.uIntrinsics, fx, fy, cx, cy);
      gl.uniform2f(u.uSize, width, height);
      gl.uniform3f(u.uPhotoEye, ...this.photoEye);
      gl.uniform2f(u.uAwayCos, ...this.awayCos);
      gl.enable(gl.BLEND);
      gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
      gl.bindVertexArray(this.vao);
      gl.drawElements(gl.TRIANGLES, 6 * count, gl.UNSIGNED_INT, 0);
      gl.bindVertexArray(null);
      gl.disable(gl.BLEND);
    }
    this._present();
    this.stats.drawMs = performance.now() - t0;   // CPU time to submit; the GPU finishes asynchronously
  }

  // the accumulated image onto the canvas
  _present() {
    const gl = this.gl, { program: p, uniforms: u } = this.present;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, this.target.width, this.target.height);
    gl.useProgram(p);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.target.texture);
    gl.uniform1i(u.uImage, 0);
    gl.bindVertexArray(this.presentVao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    gl.bindVertexArray(null);
  }

  // The last image as Uint8Array(width * height * 4), RGBA, rows top to bottom (presented again first, so this
  // works after the browser has composited the canvas).
  readPixels() {
    const gl = this.gl, { width, height } = this.target;
    this._present();
    const raw = new Uint8Array(width * height * 4);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    const out = new Uint8Array(raw.length), row = 4 * width;
    for (let y = 0; y < height; y++) out.set(raw.subarray((height - 1 - y) * row, (height - y) * row), y * row);
    return out;
  }
}
