/* Placeholder until the program lands. */
#include <stdio.h>

int main(void)
{
    fputs("not implemented yet\n", stderr);
    return 1;
}
