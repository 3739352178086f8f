/* A stand-in for the CUDA driver library (libcuda.so.1), for building CUDA kernels ahead of
 * time on a machine without a GPU driver.
 *
 * TVM's CUDA runtime library (tvm/lib/libtvm_runtime_cuda.so) links against libcuda.so.1;
 * when that cannot be loaded, TVM silently keeps CUDA *source* in compiled modules and never
 * calls nvcc. With this stub on LD_LIBRARY_PATH the runtime library loads, TVM calls its CUDA
 * compile callback, and the module carries real device code (fatbin/cubin). Building never
 * calls the driver; every entry point here fails with CUDA_ERROR_NO_DEVICE (100) should
 * anything try. dynfilter_tvm.aot compiles this file with the C compiler into a temporary
 * directory and uses it only in the child process that builds CUDA bundles.
 *
 * Exported: the driver entry points TVM 0.27's libtvm_runtime_cuda.so imports
 * (`nm -D --undefined-only libtvm_runtime_cuda.so | grep ' cu'`), plus a few common ones.
 */
typedef int CUresult;

#define CUDA_ERROR_NO_DEVICE 100

static const char stub_message[] = "dynfilter_tvm stub libcuda: no CUDA driver on this machine";

CUresult cuGetErrorName(CUresult error, const char **str) {
  (void)error;
  if (str) *str = stub_message;
  return 0;
}

CUresult cuGetErrorString(CUresult error, const char **str) {
  (void)error;
  if (str) *str = stub_message;
  return 0;
}

#define STUB(name) \
  CUresult name(void) { return CUDA_ERROR_NO_DEVICE; }

STUB(cuInit)
STUB(cuDriverGetVersion)
STUB(cuDeviceGet)
STUB(cuDeviceGetCount)
STUB(cuDeviceGetName)
STUB(cuDeviceGetAttribute)
STUB(cuCtxGetCurrent)
STUB(cuFuncSetAttribute)
STUB(cuFuncGetAttribute)
STUB(cuLaunchKernel)
STUB(cuLaunchKernelEx)
STUB(cuModuleGetFunction)
STUB(cuModuleGetGlobal)
STUB(cuModuleLoadData)
STUB(cuModuleUnload)
STUB(cuTensorMapEncodeTiled)
