/* wsgi.file_wrapper: marks a file-like response so the response writer can
 * sendfile() it when it is a real file; otherwise it iterates in blocks. */
#include "worker.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *filelike;
    Py_ssize_t blksize;
} FileWrapper;

static int fw_init(FileWrapper *fw, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = { "filelike", "blksize", NULL };
    PyObject *f;
    Py_ssize_t blksize = 8192;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n", kwlist, &f, &blksize))
        return -1;
    if (blksize <= 0)
        blksize = 8192;
    Py_XSETREF(fw->filelike, Py_NewRef(f));
    fw->blksize = blksize;
    return 0;
}

static PyObject *fw_next(FileWrapper *fw)
{
    PyObject *b = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);

    if (b && PyObject_Length(b) == 0) {
        Py_DECREF(b);
        return NULL;
    }
    return b;
}

static PyObject *fw_close(FileWrapper *fw, PyObject *unused)
{
    PyObject *close;

    if (!fw->filelike)
        Py_RETURN_NONE;
    close = PyObject_GetAttrString(fw->filelike, "close");
    if (!close) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    return r;
}

static void fw_dealloc(FileWrapper *fw)
{
    Py_XDECREF(fw->filelike);
    Py_TYPE(fw)->tp_free((PyObject *)fw);
}

static PyMethodDef fw_methods[] = {
    { "close", (PyCFunction)fw_close, METH_NOARGS, "Close the wrapped file." },
    { NULL, NULL, 0, NULL }
};

static PyMemberDef fw_members[] = {
    { "filelike", T_OBJECT, offsetof(FileWrapper, filelike), READONLY, NULL },
    { "blksize", T_PYSSIZET, offsetof(FileWrapper, blksize), READONLY, NULL },
    { NULL, 0, 0, 0, NULL }
};

static PyTypeObject FileWrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appstack.FileWrapper",
    .tp_basicsize = sizeof(FileWrapper),
    .tp_dealloc = (destructor)fw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.file_wrapper(filelike, blksize=8192)",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)fw_next,
    .tp_methods = fw_methods,
    .tp_members = fw_members,
    .tp_init = (initproc)fw_init,
    .tp_new = PyType_GenericNew,
};

bool wk_filewrap_init(void)
{
    return PyType_Ready(&FileWrapperType) == 0;
}

PyObject *wk_filewrap_type(void)
{
    return (PyObject *)&FileWrapperType;
}

bool wk_filewrap_check(PyObject *o)
{
    return Py_IS_TYPE(o, &FileWrapperType);
}

PyObject *wk_filewrap_filelike(PyObject *o)
{
    return ((FileWrapper *)o)->filelike;
}

Py_ssize_t wk_filewrap_blksize(PyObject *o)
{
    return ((FileWrapper *)o)->blksize;
}
